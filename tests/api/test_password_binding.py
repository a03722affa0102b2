"""A stored password is only ever sent to the server it was saved for (issue 11, item 1).

Two recording aiosmtpd servers on loopback: the alias is saved against A; B stands for a
server someone else controls. Whatever is changed without typing the password again, B
never sees an AUTH line."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from sendas.api import create_app
from sendas.context import AppContext
from tests.api.test_connection_test import alias_body
from tests.conftest import Person
from tests.servers.smtpd import PASSWORD, USER, SmtpdFactory, SmtpdServer

NEW_PASSWORD = "a new password for B"


@pytest_asyncio.fixture
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx.settings, ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://sendas.test") as c:
        yield c


def server_text(server: SmtpdServer) -> str:
    return f"{server.host}:{server.port}"


def passwords_seen(server: SmtpdServer) -> list[str]:
    """Every password the server received with AUTH PLAIN (base64 ``\\0user\\0password``)."""
    seen = []
    for line in server.recorder.auth_exchange:
        for word in line.split()[-1:]:
            try:
                decoded = base64.b64decode(word, validate=True)
            except ValueError:
                continue
            if decoded.count(b"\0") == 2:
                seen.append(decoded.split(b"\0")[2].decode())
    return seen


def refused_for_password(r: httpx.Response, field: str = "smtp_password") -> None:
    assert r.status_code == 422, r.text
    (entry,) = r.json()["detail"]
    assert entry["loc"] == ["body", field]
    assert "enter the password again" in entry["msg"]


async def saved_alias(api: httpx.AsyncClient, person: Person, server: SmtpdServer) -> int:
    r = await api.post("/api/aliases", json=alias_body(server), headers=person.headers)
    assert r.status_code == 201, r.text
    alias_id: int = r.json()["id"]
    return alias_id


async def test_patching_the_server_without_the_password_is_refused(
    api: httpx.AsyncClient, alice: Person, smtpd: SmtpdFactory
) -> None:
    a, b = await smtpd(tls="starttls"), await smtpd(tls="starttls")
    alias_id = await saved_alias(api, alice, a)
    url = f"/api/aliases/{alias_id}"

    r = await api.patch(url, json={"smtp_server": server_text(b)}, headers=alice.headers)
    refused_for_password(r)
    stored = (await api.get(url, headers=alice.headers)).json()
    assert stored["smtp_server"] == server_text(a)  # nothing written

    # The saved alias still tests against A; B never hears of the password.
    r = await api.post(f"{url}/test", headers=alice.headers)
    assert r.json()["status"] == "OK", r.json()
    assert passwords_seen(a) == [PASSWORD]
    assert b.recorder.connections == 0 and passwords_seen(b) == []

    # With the password typed again the change is saved, and B gets that one only.
    b.recorder.users = {USER: NEW_PASSWORD}
    body = {"smtp_server": server_text(b), "smtp_password": NEW_PASSWORD}
    assert (await api.patch(url, json=body, headers=alice.headers)).status_code == 200
    assert (await api.post(f"{url}/test", headers=alice.headers)).json()["status"] == "OK"
    assert passwords_seen(b) == [NEW_PASSWORD]


async def test_tls_mode_and_trust_changes_need_the_password(
    api: httpx.AsyncClient, alice: Person, smtpd: SmtpdFactory
) -> None:
    a = await smtpd(tls="starttls")
    alias_id = await saved_alias(api, alice, a)
    url = f"/api/aliases/{alias_id}"
    for change in (
        {"tls": "none", "allow_plaintext_auth": True},
        {"tls": "implicit"},
        {"smtp_server": f"{a.host}:{a.port + 1}"},
        {"smtp_server": f"localhost:{a.port}"},
        {"ca_bundle": alias_body(a)["ca_bundle"].replace("\n", "\n\n")},  # another bundle
    ):
        refused_for_password(await api.patch(url, json=change, headers=alice.headers))
    # Spelling the same server differently, or changing what is not about the server, is fine.
    same = {"smtp_server": f"{a.host}:{a.port}", "tls": "starttls", "alias_name": "Al"}
    assert (await api.patch(url, json=same, headers=alice.headers)).status_code == 200


async def test_unsaved_test_uses_the_stored_password_only_for_the_same_server(
    api: httpx.AsyncClient, alice: Person, smtpd: SmtpdFactory
) -> None:
    a, b = await smtpd(tls="starttls"), await smtpd(tls="starttls")
    alias_id = await saved_alias(api, alice, a)
    for change in ({"smtp_server": server_text(b)}, {"tls": "implicit"}):
        r = await api.post(
            "/api/aliases/test", json={"alias_id": alias_id, **change}, headers=alice.headers
        )
        refused_for_password(r)
    assert b.recorder.connections == 0 and passwords_seen(b) == []

    # With the password in the request, the test goes to B with that password.
    b.recorder.users = {USER: NEW_PASSWORD}
    body = {"alias_id": alias_id, "smtp_server": server_text(b), "smtp_password": NEW_PASSWORD}
    r = await api.post("/api/aliases/test", json=body, headers=alice.headers)
    assert r.json()["status"] == "OK", r.json()
    assert passwords_seen(b) == [NEW_PASSWORD]
    # Unchanged settings still test with the stored password.
    r = await api.post("/api/aliases/test", json={"alias_id": alias_id}, headers=alice.headers)
    assert r.json()["status"] == "OK" and passwords_seen(a) == [PASSWORD]


async def test_unsaved_test_without_a_user_name_is_a_test_not_a_500(
    api: httpx.AsyncClient, alice: Person, smtpd: SmtpdFactory
) -> None:
    a = await smtpd(tls="starttls")
    body = alias_body(a)
    del body["smtp_username"], body["smtp_password"]
    r = await api.post("/api/aliases/test", json=body, headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("OK", "FAILED")
    assert a.recorder.connections == 1  # it really ran


async def test_imap_account_server_change_needs_the_password(
    api: httpx.AsyncClient, alice: Person
) -> None:
    body = {"imap_server": "imap.example.test:993", "username": USER, "password": PASSWORD}
    r = await api.post("/api/imap-accounts", json=body, headers=alice.headers)
    url = f"/api/imap-accounts/{r.json()['id']}"
    for change in (
        {"imap_server": "imap.elsewhere.test:993"},
        {"imap_server": "imap.example.test:994"},
        {"tls": "starttls"},
    ):
        refused_for_password(await api.patch(url, json=change, headers=alice.headers), "password")
    assert (await api.get(url, headers=alice.headers)).json()["imap_server"] == (
        "imap.example.test:993"
    )
    change = {"imap_server": "imap.elsewhere.test:993", "password": "another one"}
    assert (await api.patch(url, json=change, headers=alice.headers)).status_code == 200
    assert (await api.patch(url, json={"description": "x"}, headers=alice.headers)).is_success


async def test_outgoing_settings_server_change_needs_the_password(
    api: httpx.AsyncClient, admin: Person, smtpd: SmtpdFactory
) -> None:
    a, b = await smtpd(tls="starttls"), await smtpd(tls="starttls")
    body = alias_body(a)
    for key in ("description", "alias_name"):
        body.pop(key)
    r = await api.put("/api/system/outgoing", json=body, headers=admin.headers)
    assert r.status_code == 200, r.text
    change = {"smtp_server": server_text(b)}
    refused_for_password(await api.put("/api/system/outgoing", json=change, headers=admin.headers))
    r = await api.post("/api/system/outgoing/test", json=change, headers=admin.headers)
    refused_for_password(r)
    assert b.recorder.connections == 0
    stored = (await api.get("/api/system/outgoing", headers=admin.headers)).json()
    assert stored["smtp_server"] == server_text(a)
    r = await api.post("/api/system/outgoing/test", headers=admin.headers)
    assert r.json()["status"] == "OK" and passwords_seen(a) == [PASSWORD]


def _events(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()
    return events


async def test_every_test_and_refused_sign_in_is_an_audit_event(
    api: httpx.AsyncClient, alice: Person, admin: Person, smtpd: SmtpdFactory
) -> None:
    a = await smtpd(tls="starttls")
    alias_id = await saved_alias(api, alice, a)
    await api.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)
    await api.post("/api/aliases/test", json={"alias_id": alias_id}, headers=alice.headers)
    wrong = alias_body(a, smtp_password="wrong-password-xyz")
    await api.post("/api/aliases/test", json=wrong, headers=alice.headers)
    outgoing = {k: v for k, v in alias_body(a).items() if k not in ("description", "alias_name")}
    r = await api.post("/api/system/outgoing/test", json=outgoing, headers=admin.headers)
    assert r.json()["status"] == "OK", r.text

    r = await api.get("/api/audit", headers=alice.headers)
    events = _events(r)
    tests = [e for e in events if e["action"] == "alias.test"]
    assert len(tests) == 3
    server = server_text(a)
    saved, unsaved_stored, unsaved_new = reversed(tests)
    assert saved["detail"] == {"server": server, "settings": "saved", "outcome": "OK",
                               "step": None}  # fmt: skip
    assert saved["target_id"] == alias_id and saved["actor_id"] == alice.id
    assert unsaved_stored["detail"]["settings"] == "unsaved"
    assert unsaved_stored["target_id"] == alias_id
    assert unsaved_new["detail"]["outcome"] == "FAILED"
    assert unsaved_new["detail"]["step"] == "auth" and unsaved_new["target_id"] is None
    (refused,) = [e for e in events if e["action"] == "alias.auth_failed"]
    assert refused["detail"] == {"server": server, "during": "test", "step": "auth"}
    assert "wrong-password-xyz" not in r.text and PASSWORD not in r.text

    admin_events = _events(await api.get("/api/audit", headers=admin.headers))
    assert any(e["action"] == "system_outgoing.test" for e in admin_events)
    assert PASSWORD not in str(admin_events)


async def test_imap_test_is_an_audit_event(api: httpx.AsyncClient, alice: Person) -> None:
    # Port 9 on loopback: nothing listens, the test fails at connect, and is still recorded.
    body = {"imap_server": "127.0.0.1:9", "username": USER, "password": PASSWORD, "tls": "none",
            "allow_plaintext_auth": True}  # fmt: skip
    account = (await api.post("/api/imap-accounts", json=body, headers=alice.headers)).json()
    r = await api.post(f"/api/imap-accounts/{account['id']}/test", headers=alice.headers)
    assert r.json()["status"] == "FAILED"
    events = _events(await api.get("/api/audit", headers=alice.headers))
    (event,) = [e for e in events if e["action"] == "imap.test"]
    assert event["target_id"] == account["id"]
    assert event["detail"]["server"] == "127.0.0.1:9"
    assert event["detail"]["outcome"] == "FAILED"
