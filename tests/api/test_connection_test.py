"""Test Connection over the API, against a real aiosmtpd server with trustme certificates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sendas.api import create_app
from sendas.context import AppContext
from tests.conftest import Person
from tests.servers.smtpd import PASSWORD, USER, SmtpdServer


@pytest_asyncio.fixture
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx.settings, ctx=ctx)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sendas.test") as c:
        yield c


def alias_body(server: SmtpdServer, **over: Any) -> dict[str, Any]:
    body = {
        "description": "Test me",
        "alias_name": "Alice",
        "from_address": USER,
        "smtp_server": f"{server.host}:{server.port}",
        "tls": server.tls,
        "smtp_username": USER,
        "smtp_password": PASSWORD,
        "ca_bundle": server.ca_pem,
    }
    body.update(over)
    return body


def assert_every_step_ok(result: dict[str, Any]) -> None:
    """A passing test, as a client reads it: every step has the contract's keys, ok true."""
    assert result["status"] == "OK", result
    assert result["steps"], result
    for step in result["steps"]:
        assert set(step) == {"name", "ok", "ms", "detail"}, step
        assert step["ok"] is True, step


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_saved_alias_ok_and_stored_as_last_test(
    api: httpx.AsyncClient, alice: Person, smtpd: Any, tls: str
):
    server = await smtpd(tls=tls)
    r = await api.post("/api/aliases", json=alias_body(server), headers=alice.headers)
    alias_id = r.json()["id"]
    r = await api.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)
    result = r.json()
    assert r.status_code == 200 and result["status"] == "OK", result
    steps = [s["name"] for s in result["steps"]]
    assert "auth" in steps and "rcpt_to" in steps
    assert server.recorder.messages == []  # no message was sent
    assert server.recorder.lines_starting(b"RCPT TO")
    stored = (await api.get(f"/api/aliases/{alias_id}", headers=alice.headers)).json()
    assert stored["last_test"]["status"] == "OK" and stored["last_test"]["tested_at"]


async def test_wrong_password_names_step_reply_and_hint(
    api: httpx.AsyncClient, alice: Person, smtpd: Any
):
    server = await smtpd(tls="starttls")
    r = await api.post(
        "/api/aliases", json=alias_body(server, smtp_password="wrong-one"), headers=alice.headers
    )
    result = (await api.post(f"/api/aliases/{r.json()['id']}/test", headers=alice.headers)).json()
    assert result["status"] == "FAILED" and result["step"] == "auth"
    assert result["server_reply"].startswith("535") and result["hint"]
    assert "wrong-one" not in str(result)


async def test_unsaved_settings_use_stored_password_and_write_nothing(
    api: httpx.AsyncClient, alice: Person, smtpd: Any
):
    server = await smtpd(tls="starttls")
    r = await api.post("/api/aliases", json=alias_body(server), headers=alice.headers)
    alias_id = r.json()["id"]
    # Test a changed display name without resending the password: the stored one is used.
    r = await api.post(
        "/api/aliases/test", json={"alias_id": alias_id, "alias_name": "New"}, headers=alice.headers
    )
    assert r.json()["status"] == "OK", r.json()
    # A new unsaved alias with a wrong password fails; nothing is stored.
    body = alias_body(server, smtp_password="nope-nope")
    r = await api.post("/api/aliases/test", json=body, headers=alice.headers)
    assert r.json()["status"] == "FAILED" and r.json()["step"] == "auth"
    rows = (await api.get("/api/aliases", headers=alice.headers)).json()
    assert len(rows) == 1 and rows[0]["alias_name"] == "Alice" and rows[0]["last_test"] is None


async def test_unsaved_bad_field_is_422(api: httpx.AsyncClient, alice: Person, smtpd: Any):
    server = await smtpd(tls="starttls")
    r = await api.post(
        "/api/aliases/test", json=alias_body(server, smtp_server="host:0"), headers=alice.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "smtp_server"


async def test_other_users_alias_test_is_404(
    api: httpx.AsyncClient, alice: Person, bob: Person, smtpd: Any
):
    server = await smtpd(tls="starttls")
    r = await api.post("/api/aliases", json=alias_body(server), headers=alice.headers)
    alias_id = r.json()["id"]
    assert (await api.post(f"/api/aliases/{alias_id}/test", headers=bob.headers)).status_code == 404
    r = await api.post("/api/aliases/test", json={"alias_id": alias_id}, headers=bob.headers)
    assert r.status_code == 404


async def test_system_outgoing_test(api: httpx.AsyncClient, admin: Person, smtpd: Any):
    server = await smtpd(tls="implicit")
    body = {
        "from_address": USER,
        "smtp_server": f"{server.host}:{server.port}",
        "tls": "implicit",
        "smtp_username": USER,
        "smtp_password": PASSWORD,
        "ca_bundle": server.ca_pem,
    }
    assert (
        await api.put("/api/system/outgoing", json=body, headers=admin.headers)
    ).status_code == 200
    r = await api.post("/api/system/outgoing/test", headers=admin.headers)
    assert r.json()["status"] == "OK", r.json()
    got = (await api.get("/api/system/outgoing", headers=admin.headers)).json()
    assert got["last_test"]["status"] == "OK"


async def test_alias_with_imap_account_names_sent_folder(
    api: httpx.AsyncClient, alice: Person, smtpd: Any, dovecot_server: Any
):
    server = await smtpd(tls="starttls")
    account = dovecot_server.special
    r = await api.post(
        "/api/imap-accounts",
        json={
            "imap_server": f"{dovecot_server.host}:{dovecot_server.imaps_port}",
            "tls": "implicit",
            "username": account.username,
            "password": account.password,
            "ca_bundle": dovecot_server.ca_pem,
        },
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    imap_id = r.json()["id"]
    r = await api.post(
        "/api/aliases", json=alias_body(server, imap_account_id=imap_id), headers=alice.headers
    )
    alias_id = r.json()["id"]
    result = (await api.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert result["status"] == "OK", result
    assert result["sent_folder"] == "Sent Items"
    assert "imap_login" in [s["name"] for s in result["steps"]]
    assert_every_step_ok(result)
    imap_steps = [s for s in result["steps"] if s["name"].startswith("imap_")]
    assert [s["name"] for s in imap_steps] == [
        "imap_connect",
        "imap_tls",
        "imap_login",
        "imap_find_sent",
    ]
    assert imap_steps[-1]["detail"].startswith("Sent folder: Sent Items")
    assert "would take mail" not in str(imap_steps)
    # What is stored as last_test reads back the same.
    stored = (await api.get(f"/api/aliases/{alias_id}", headers=alice.headers)).json()
    assert stored["last_test"]["sent_folder"] == "Sent Items"
    assert_every_step_ok(stored["last_test"])
    # The IMAP account's own test, and a wrong IMAP password failing at imap_login.
    r = await api.post(f"/api/imap-accounts/{imap_id}/test", headers=alice.headers)
    assert r.json()["status"] == "OK" and r.json()["sent_folder"] == "Sent Items"
    assert_every_step_ok(r.json())
    assert r.json()["steps"][-1]["detail"].startswith("Sent folder: Sent Items")
    account_out = (await api.get(f"/api/imap-accounts/{imap_id}", headers=alice.headers)).json()
    assert account_out["last_test"]["sent_folder"] == "Sent Items"
    await api.patch(
        f"/api/imap-accounts/{imap_id}", json={"password": "wrong-pw"}, headers=alice.headers
    )
    r = await api.post("/api/aliases/test", json={"alias_id": alias_id}, headers=alice.headers)
    result = r.json()
    assert result["status"] == "FAILED" and result["step"] == "imap_login", result
    assert result["hint"] and "wrong-pw" not in str(result)


async def test_postfix_round_trip_test_connection(
    api: httpx.AsyncClient, alice: Person, postfix_server: Any
):
    pf = postfix_server
    body = {
        "description": "Postfix",
        "from_address": pf.from_address,
        "smtp_server": f"{pf.host}:{pf.port}",
        "tls": "starttls",
        "smtp_username": pf.username,
        "smtp_password": pf.password,
        "ca_bundle": pf.ca_pem,
    }
    r = await api.post("/api/aliases", json=body, headers=alice.headers)
    alias_id = r.json()["id"]
    result = (await api.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert result["status"] == "OK", result
    # Sending as an address the account does not own is refused at MAIL FROM / RCPT.
    r = await api.post(
        "/api/aliases/test",
        json={"alias_id": alias_id, "from_address": "someone-else@example.com"},
        headers=alice.headers,
    )
    failed = r.json()
    assert failed["status"] == "FAILED" and failed["step"] in {"mail_from", "rcpt_to"}, failed
    assert failed["server_reply"].startswith("553")


TEST_ENDPOINTS = [
    ("/api/aliases/{alias_id}/test", "post"),
    ("/api/aliases/test", "post"),
    ("/api/imap-accounts/{account_id}/test", "post"),
    ("/api/system/outgoing/test", "post"),
]


async def test_openapi_publishes_the_one_result_type(api: httpx.AsyncClient):
    schema = (await api.get("/openapi.json")).json()
    ref = "#/components/schemas/ConnectionTestResult"
    for path, method in TEST_ENDPOINTS:
        answer = schema["paths"][path][method]["responses"]["200"]
        assert answer["content"]["application/json"]["schema"] == {"$ref": ref}, path
    models = schema["components"]["schemas"]
    result = models["ConnectionTestResult"]["properties"]
    assert {"status", "step", "server_reply", "hint", "steps", "sent_folder", "tested_at"} <= set(
        result
    )
    assert result["status"]["enum"] == ["OK", "FAILED"]
    assert result["steps"]["items"] == {"$ref": "#/components/schemas/ConnectionTestStep"}
    assert set(models["ConnectionTestStep"]["properties"]) == {"name", "ok", "ms", "detail"}
    for out in ("AliasOut", "ImapOut", "SystemOutgoingOut"):
        assert {"$ref": ref} in models[out]["properties"]["last_test"]["anyOf"], out


# As versions before the one result type stored it: "step" for the name, IMAP steps marked
# not ok although the test passed, "status" instead of "ok", an "error" key.
LEGACY_LAST_TEST = {
    "status": "OK",
    "steps": [
        {"step": "connect", "ok": True, "ms": 1.5, "detail": "127.0.0.1:587"},
        {"step": "rcpt_to", "ok": True, "ms": 0.7, "detail": ""},
        {"step": "imap_login", "ok": False, "ms": 3, "detail": "user@example.test"},
        {"step": "imap_find_sent", "ok": False, "ms": 2, "detail": "Sent (by name)"},
    ],
    "sent_folder": "Sent",
    "tested_at": "2024-05-01T14:03:00+00:00",
}
LEGACY_IMAP_FAILED = {
    "status": "FAILED",
    "step": "login",
    "server_reply": "NO [AUTHENTICATIONFAILED] Authentication failed.",
    "hint": "Check the password.",
    "error": "the server refused the login",
    "steps": [
        {"step": "connect", "status": "OK", "ms": 4, "detail": "imap.example.test:993"},
        {"step": "login", "status": "FAILED", "ms": 9, "reply": "refused"},
    ],
    "tested_at": "2024-05-01T14:03:00+00:00",
}


async def test_legacy_stored_last_test_reads_as_the_result_type(
    ctx: AppContext, api: httpx.AsyncClient, alice: Person, smtpd: Any
):
    from sendas.db.models import Alias, ImapAccount

    server = await smtpd(tls="starttls")
    alias_id = (
        await api.post("/api/aliases", json=alias_body(server), headers=alice.headers)
    ).json()["id"]
    r = await api.post(
        "/api/imap-accounts",
        json={"imap_server": "imap.example.test:993", "username": "u", "password": "pw-1"},
        headers=alice.headers,
    )
    imap_id = r.json()["id"]
    with ctx.db.write() as s:
        s.get_one(Alias, alias_id).last_test = LEGACY_LAST_TEST
        s.get_one(ImapAccount, imap_id).last_test = LEGACY_IMAP_FAILED
    got = (await api.get(f"/api/aliases/{alias_id}", headers=alice.headers)).json()["last_test"]
    assert_every_step_ok(got)
    assert [s["name"] for s in got["steps"]] == [
        "connect",
        "rcpt_to",
        "imap_login",
        "imap_find_sent",
    ]
    assert got["sent_folder"] == "Sent" and got["tested_at"].startswith("2024-05-01T14:03")
    got = (await api.get(f"/api/imap-accounts/{imap_id}", headers=alice.headers)).json()[
        "last_test"
    ]
    assert (got["status"], got["step"], got["hint"]) == ("FAILED", "login", "Check the password.")
    assert got["steps"] == [
        {"name": "connect", "ok": True, "ms": 4.0, "detail": "imap.example.test:993"},
        {"name": "login", "ok": False, "ms": 9.0, "detail": "refused"},
    ]
    assert "error" not in got
