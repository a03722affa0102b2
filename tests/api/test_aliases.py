"""Email aliases over the API: every rule of the Edit Alias screen, as a client sees it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Person

GOOD: dict[str, Any] = {
    "description": "Work",
    "alias_name": "Alice Example",
    "from_address": "alice@example.com",
    "smtp_server": "mail.example.com:465",
    "smtp_username": "alice@example.com",
    "smtp_password": "s3cret-Pa55",
    "delay_ms": 2500,
}


def create(client: TestClient, who: Person, **over: Any) -> dict[str, Any]:
    r = client.post("/api/aliases", json={**GOOD, **over}, headers=who.headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def fields_of(r: Any) -> set[str]:
    return {".".join(str(p) for p in e["loc"][1:]) for e in r.json()["detail"]}


def test_create_returns_every_field_and_never_the_password(client: TestClient, alice: Person):
    body = create(client, alice, reply_to="replies@example.com")
    assert body["description"] == "Work"
    assert body["alias_name"] == "Alice Example"
    assert body["smtp_server"] == "mail.example.com:465"
    assert body["tls"] == "auto"
    assert body["auth"] == "password"
    assert body["reply_to"] == "replies@example.com"
    assert body["password_set"] is True
    assert body["needs_reauth"] is False
    assert body["last_test"] is None
    assert body["delay_ms"] == 2500
    assert "smtp_password" not in body
    assert "s3cret-Pa55" not in client.get(f"/api/aliases/{body['id']}", headers=alice.headers).text


def test_first_alias_is_default_and_default_moves(client: TestClient, alice: Person):
    a = create(client, alice, description="A")
    b = create(client, alice, description="B")
    assert a["is_default"] is True and b["is_default"] is False
    r = client.patch(f"/api/aliases/{b['id']}", json={"is_default": True}, headers=alice.headers)
    assert r.status_code == 200 and r.json()["is_default"] is True
    listed = {
        x["description"]: x["is_default"]
        for x in client.get("/api/aliases", headers=alice.headers).json()
    }
    assert listed == {"A": False, "B": True}


def test_new_alias_marked_default_takes_over(client: TestClient, alice: Person):
    create(client, alice, description="A")
    create(client, alice, description="B", is_default=True)
    listed = {
        x["description"]: x["is_default"]
        for x in client.get("/api/aliases", headers=alice.headers).json()
    }
    assert listed == {"A": False, "B": True}


def test_default_cannot_be_unset_directly(client: TestClient, alice: Person):
    a = create(client, alice)
    r = client.patch(f"/api/aliases/{a['id']}", json={"is_default": False}, headers=alice.headers)
    assert r.status_code == 422
    assert fields_of(r) == {"is_default"}


def test_deleting_default_promotes_oldest(client: TestClient, alice: Person):
    a = create(client, alice, description="A")
    create(client, alice, description="B")
    create(client, alice, description="C")
    assert client.delete(f"/api/aliases/{a['id']}", headers=alice.headers).status_code == 204
    listed = {
        x["description"]: x["is_default"]
        for x in client.get("/api/aliases", headers=alice.headers).json()
    }
    assert listed == {"B": True, "C": False}


def test_description_unique_per_user_case_insensitive(
    client: TestClient, alice: Person, bob: Person
):
    create(client, alice, description="Work")
    r = client.post("/api/aliases", json={**GOOD, "description": "WORK"}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"description"}
    create(client, bob, description="work")  # another user may use it


def test_description_required(client: TestClient, alice: Person):
    body = {k: v for k, v in GOOD.items() if k != "description"}
    r = client.post("/api/aliases", json=body, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"description"}


@pytest.mark.parametrize(
    ("server", "tls", "expected"),
    [
        ("smtp.example.com:587", "auto", "smtp.example.com:587"),
        ("smtp.example.com", "implicit", "smtp.example.com:465"),
        ("smtp.example.com", "starttls", "smtp.example.com:587"),
        ("smtp.example.com", "auto", "smtp.example.com:587"),
        ("smtp.example.com", "none", "smtp.example.com:25"),
        ("192.0.2.7:2525", "auto", "192.0.2.7:2525"),
        ("[2001:db8::1]:587", "auto", "[2001:db8::1]:587"),
    ],
)
def test_smtp_server_parsing(
    client: TestClient, alice: Person, server: str, tls: str, expected: str
):
    body = create(client, alice, smtp_server=server, tls=tls)
    assert body["smtp_server"] == expected


@pytest.mark.parametrize(
    "server", ["mail.example.com:99999", "mail.example.com:abc", "bad host:25", ":25"]
)
def test_bad_smtp_server_is_refused(client: TestClient, alice: Person, server: str):
    r = client.post("/api/aliases", json={**GOOD, "smtp_server": server}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"smtp_server"}
    assert client.get("/api/aliases", headers=alice.headers).json() == []


def test_imap_host_in_smtp_field_warns(client: TestClient, alice: Person):
    body = create(client, alice, smtp_server="imap.gmail.com:465")
    assert any("imap." in w for w in body["warnings"])


def test_idn_addresses_stored_unicode(client: TestClient, alice: Person):
    body = create(
        client, alice, from_address="jörg@bücher.example", reply_to="info@xn--bcher-kva.example"
    )
    assert body["from_address"] == "jörg@bücher.example"
    assert body["reply_to"] == "info@bücher.example"


@pytest.mark.parametrize("field", ["from_address", "reply_to"])
def test_bad_addresses_refused(client: TestClient, alice: Person, field: str):
    r = client.post("/api/aliases", json={**GOOD, field: "not an address"}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {field}


def test_google_app_password_spaces_removed(client: TestClient, alice: Person, ctx: Any):
    from sendas.db.models import Alias

    body = create(client, alice, smtp_password="abcd efgh ijkl mnop")
    with ctx.db.read() as s:
        alias = s.get(Alias, body["id"])
        assert ctx.secrets.decrypt(alias.smtp_password_enc).get_secret_value() == "abcdefghijklmnop"


@pytest.mark.parametrize("delay", [-1, 3_600_001, 1.5, "100"])
def test_delay_range(client: TestClient, alice: Person, delay: Any):
    r = client.post("/api/aliases", json={**GOOD, "delay_ms": delay}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"delay_ms"}


def test_delay_bounds_accepted(client: TestClient, alice: Person):
    assert create(client, alice, description="x", delay_ms=0)["delay_ms"] == 0
    assert create(client, alice, description="y", delay_ms=3_600_000)["delay_ms"] == 3_600_000


def test_max_connections_defaults_to_one_and_relays_may_take_more(
    client: TestClient, alice: Person
):
    personal = create(client, alice, description="mailbox")
    assert personal["max_connections"] == 1
    relay = create(client, alice, description="relay", delay_ms=0, max_connections=5)
    assert relay["max_connections"] == 5
    again = client.get(f"/api/aliases/{relay['id']}", headers=alice.headers).json()
    assert again["max_connections"] == 5


@pytest.mark.parametrize("value", [0, 11, 1.5, "3"])
def test_max_connections_range(client: TestClient, alice: Person, value: Any):
    """1 up to SENDAS_MAX_CONNECTIONS_CAP (10 by default)."""
    body = {**GOOD, "delay_ms": 0, "max_connections": value}
    r = client.post("/api/aliases", json=body, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"max_connections"}
    assert client.get("/api/aliases", headers=alice.headers).json() == []


def test_more_connections_need_no_delay(client: TestClient, alice: Person):
    r = client.post("/api/aliases", json={**GOOD, "max_connections": 2}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"max_connections"}
    assert "delay" in r.json()["detail"][0]["msg"]
    relay = create(client, alice, delay_ms=0, max_connections=3)
    # A delay added later to a relay with more connections is refused too, nothing written.
    r = client.patch(f"/api/aliases/{relay['id']}", json={"delay_ms": 100}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"max_connections"}
    kept = client.get(f"/api/aliases/{relay['id']}", headers=alice.headers).json()
    assert (kept["delay_ms"], kept["max_connections"]) == (0, 3)
    r = client.patch(
        f"/api/aliases/{relay['id']}",
        json={"delay_ms": 100, "max_connections": 1},
        headers=alice.headers,
    )
    assert r.status_code == 200 and r.json()["max_connections"] == 1


def test_outgoing_settings_max_connections(client: TestClient, admin: Person):
    body = {"from_address": "noreply@example.com", "smtp_server": "relay.example.com:25",
            "delay_ms": 0, "max_connections": 4}  # fmt: skip
    r = client.put("/api/system/outgoing", json=body, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["max_connections"] == 4
    r = client.put("/api/system/outgoing", json={"delay_ms": 50}, headers=admin.headers)
    assert r.status_code == 422 and fields_of(r) == {"max_connections"}
    assert client.get("/api/system/outgoing", headers=admin.headers).json()["delay_ms"] == 0


def test_patch_without_password_keeps_it(client: TestClient, alice: Person, ctx: Any):
    from sendas.db.models import Alias

    a = create(client, alice)
    r = client.patch(
        f"/api/aliases/{a['id']}", json={"alias_name": "Alice E."}, headers=alice.headers
    )
    assert r.status_code == 200 and r.json()["password_set"] is True
    with ctx.db.read() as s:
        token = s.get(Alias, a["id"]).smtp_password_enc
        assert ctx.secrets.decrypt(token).get_secret_value() == "s3cret-Pa55"
    r = client.patch(
        f"/api/aliases/{a['id']}", json={"smtp_password": "new-one-1"}, headers=alice.headers
    )
    with ctx.db.read() as s:
        token = s.get(Alias, a["id"]).smtp_password_enc
        assert ctx.secrets.decrypt(token).get_secret_value() == "new-one-1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alias_name", "Evil\r\nBcc: victim@example.com"),
        ("description", "line\nbreak"),
        ("from_address", "a@example.com\r\nX: y"),
        ("alias_name", "x" * 999),
        ("smtp_username", "u\nv"),
    ],
)
def test_header_injection_and_oversize_refused(
    client: TestClient, alice: Person, field: str, value: str
):
    r = client.post("/api/aliases", json={**GOOD, field: value}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {field}
    assert client.get("/api/aliases", headers=alice.headers).json() == []


def test_unknown_fields_wrong_types_and_bad_json(client: TestClient, alice: Person):
    r = client.post("/api/aliases", json={**GOOD, "colour": "red"}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"colour"}
    r = client.post("/api/aliases", json={**GOOD, "is_default": "perhaps"}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"is_default"}
    r = client.post(
        "/api/aliases",
        content=b'{"description": ',
        headers={**alice.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert client.get("/api/aliases", headers=alice.headers).json() == []


def test_several_bad_fields_reported_each_and_password_never_echoed(
    client: TestClient, alice: Person
):
    body = {**GOOD, "from_address": "nope", "delay_ms": -5, "smtp_password": "leak-me\n"}
    r = client.post("/api/aliases", json=body, headers=alice.headers)
    assert r.status_code == 422
    assert fields_of(r) == {"from_address", "delay_ms", "smtp_password"}
    assert "leak-me" not in r.text


def test_imap_account_must_be_own(client: TestClient, alice: Person, bob: Person):
    acc = client.post(
        "/api/imap-accounts",
        json={"imap_server": "imap.example.com:993", "username": "bob", "password": "pw-bob-1"},
        headers=bob.headers,
    ).json()
    r = client.post(
        "/api/aliases", json={**GOOD, "imap_account_id": acc["id"]}, headers=alice.headers
    )
    assert r.status_code == 422 and fields_of(r) == {"imap_account_id"}


def test_oauth_alias_needs_no_smtp_fields(client: TestClient, alice: Person):
    r = client.post(
        "/api/aliases", json={"description": "G", "auth": "google"}, headers=alice.headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["smtp_server"] == "smtp.gmail.com:465"
    assert r.json()["password_set"] is False


def test_password_alias_requires_server_and_from(client: TestClient, alice: Person):
    r = client.post("/api/aliases", json={"description": "P"}, headers=alice.headers)
    assert r.status_code == 422 and fields_of(r) == {"from_address", "smtp_server"}
