"""'Automatic' encryption through the API: the result says what it found (``tls_found``);
IMAP settings tested before saving; the database outgoing settings send a test message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sendas.api import create_app
from sendas.context import AppContext
from sendas.net.tls_modes import IMPLICIT
from tests.api.test_connection_test import alias_body
from tests.conftest import Person
from tests.servers.smtpd import PASSWORD, USER


@pytest_asyncio.fixture
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx.settings, ctx=ctx)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sendas.test") as c:
        yield c


@pytest.fixture
def quick(ctx: AppContext) -> AppContext:
    """Test Connection with short waits, so the silent-server cases stay quick."""
    ctx.settings.tls_detect_wait = 0.3
    ctx.settings.test_step_timeout = 1.0
    return ctx


@pytest.mark.parametrize("server_tls", ["implicit", "starttls"])
async def test_auto_finds_the_mode_on_a_non_standard_port(
    api: httpx.AsyncClient, alice: Person, smtpd: Any, quick: AppContext, server_tls: str
) -> None:
    server = await smtpd(tls=server_tls)
    body = alias_body(server, tls="auto")
    r = await api.post("/api/aliases/test", json=body, headers=alice.headers)
    result = r.json()
    assert result["status"] == "OK", result
    assert result["tls_found"] == server_tls


async def test_starttls_against_implicit_fails_at_greeting_naming_the_mode(
    api: httpx.AsyncClient, alice: Person, smtpd: Any, quick: AppContext
) -> None:
    server = await smtpd(tls="implicit")
    body = alias_body(server, tls="starttls")
    result = (await api.post("/api/aliases/test", json=body, headers=alice.headers)).json()
    assert (result["status"], result["step"]) == ("FAILED", "greeting"), result
    assert f"'{IMPLICIT}'" in result["hint"]


async def test_imap_settings_tested_before_saving(
    api: httpx.AsyncClient, alice: Person, dovecot_server: Any, quick: AppContext
) -> None:
    account = dovecot_server.special
    body = {
        "imap_server": f"{dovecot_server.host}:{dovecot_server.imaps_port}",
        "tls": "auto",
        "username": account.username,
        "password": account.password,
        "ca_bundle": dovecot_server.ca_pem,
    }
    r = await api.post("/api/imap-accounts/test", json=body, headers=alice.headers)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "OK", result
    assert (result["tls_found"], result["sent_folder"]) == ("implicit", "Sent Items")
    assert account.password not in r.text
    # Nothing was saved.
    assert (await api.get("/api/imap-accounts", headers=alice.headers)).json() == []
    bad = await api.post(
        "/api/imap-accounts/test", json={**body, "password": "wrong"}, headers=alice.headers
    )
    assert (bad.json()["status"], bad.json()["step"]) == ("FAILED", "login")
    missing = await api.post(
        "/api/imap-accounts/test", json={"username": "x"}, headers=alice.headers
    )
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"][-1] == "imap_server"


async def test_system_outgoing_sends_a_test_message(
    api: httpx.AsyncClient, admin: Person, smtpd: Any, quick: AppContext
) -> None:
    server = await smtpd(tls="implicit")
    body = {
        "from_address": USER,
        "from_name": "Example CRM",
        "smtp_server": f"{server.host}:{server.port}",
        "tls": "auto",
        "smtp_username": USER,
        "smtp_password": PASSWORD,
        "ca_bundle": server.ca_pem,
    }
    r = await api.post(
        "/api/system/outgoing/test", json={**body, "to": "ops@example.net"}, headers=admin.headers
    )
    result = r.json()
    assert result["status"] == "OK", result
    send = next(s for s in result["steps"] if s["name"] == "send")
    assert send["ok"] and send["detail"].startswith("accepted for ops@example.net: 250")
    assert result["tls_found"] == "implicit"
    (message,) = server.recorder.messages
    assert message.rcpt_tos == ["ops@example.net"]
    assert b"Subject: sendas test message" in message.data
    # Nothing was saved by the test.
    got = (await api.get("/api/system/outgoing", headers=admin.headers)).json()
    assert got["configured"] is False
    bad = await api.post(
        "/api/system/outgoing/test", json={**body, "to": "not an address"}, headers=admin.headers
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][-1] == "to"


async def test_openapi_documents_tls_found(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    props = schema["components"]["schemas"]["ConnectionTestResult"]["properties"]
    assert "tls_found" in props
    assert "/api/imap-accounts/test" in schema["paths"]
    test_body = schema["paths"]["/api/system/outgoing/test"]["post"]["requestBody"]
    assert "SystemOutgoingTest" in str(test_body)
