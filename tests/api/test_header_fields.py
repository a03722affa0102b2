"""Header-bound alias and outgoing fields are checked at save time exactly as the message
builder checks them (issue 11, item 7): what was saved can always be sent."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sendas.compose import Content, Sender, compose
from sendas.errors import ValidationFailed
from tests.conftest import Person

BAD = {
    "tab": "Alice\tSmith",
    "line feed": "Alice\nBcc: x@example.test",
    "next line": "Alice\x85Smith",
    "line separator": "Alice\u2028Smith",
    "paragraph separator": "Alice\u2029Smith",
    "escape": "Alice\x1bSmith",
    "encoded word": "=?utf-8?q?Bcc=3A_x?=",
}


def alias(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "description": "Work",
        "alias_name": "Alice",
        "from_address": "alice@example.test",
        "smtp_server": "mail.example.test:587",
        "smtp_username": "alice",
        "smtp_password": "pw-123456",
    }
    body.update(over)
    return body


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
def test_alias_name_the_builder_refuses_is_refused_at_save(
    client: TestClient, alice: Person, value: str
) -> None:
    with pytest.raises(ValidationFailed):  # the builder's verdict ...
        compose(Sender(value, "alice@example.test"), Content(to=["b@example.test"]), utf8=True)
    r = client.post("/api/aliases", json=alias(alias_name=value), headers=alice.headers)
    assert r.status_code == 422, r.text  # ... is the save's verdict
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "alias_name"]]
    assert client.get("/api/aliases", headers=alice.headers).json() == []


@pytest.mark.parametrize("field", ["from_address", "reply_to"])
def test_addresses_that_look_like_encoded_words_are_refused(
    client: TestClient, alice: Person, field: str
) -> None:
    r = client.post(
        "/api/aliases", json=alias(**{field: "=?utf-8?q?x?=@example.test"}), headers=alice.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", field]


def test_patch_and_outgoing_from_name_are_checked_too(
    client: TestClient, alice: Person, admin: Person
) -> None:
    alias_id = client.post("/api/aliases", json=alias(), headers=alice.headers).json()["id"]
    r = client.patch(
        f"/api/aliases/{alias_id}", json={"alias_name": "A\u2028B"}, headers=alice.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "alias_name"]
    r = client.put("/api/system/outgoing", json={"from_name": "Ops\tTeam"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "from_name"]
    # Plain names still pass, non-ASCII included.
    r = client.patch(
        f"/api/aliases/{alias_id}", json={"alias_name": "Zoë O'Brien"}, headers=alice.headers
    )
    assert r.status_code == 200 and r.json()["alias_name"] == "Zoë O'Brien"


def test_a_lone_surrogate_in_a_merge_field_is_422_naming_the_field(
    client: TestClient, alice: Person
) -> None:
    client.post("/api/aliases", json=alias(), headers=alice.headers)
    headers = {**alice.headers, "content-type": "application/json"}
    recipient = '{"email": "b@example.test", "fields": {"name": "x\\ud800"}}'
    cases = {
        "/api/campaigns/preview": (
            f'{{"subject": "Hi {{{{ name }}}}", "text": "x", "recipient": {recipient}}}',
            ["body", "recipient", "fields"],
        ),
        "/api/campaigns": (
            f'{{"subject": "Hi {{{{ name }}}}", "text": "x", "recipients": [{recipient}]}}',
            ["body", "recipients", 0, "fields"],
        ),
    }
    for path, (body, loc) in cases.items():
        r = client.post(path, content=body.encode(), headers=headers)
        assert r.status_code == 422, (path, r.text)
        (entry,) = r.json()["detail"]
        assert entry["loc"] == loc and "name" in entry["msg"], entry
    # And in an ordinary text field.
    r = client.post("/api/aliases", content=b'{"description": "x\\udfff"}', headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "description"]
