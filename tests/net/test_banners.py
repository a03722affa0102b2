"""A service that does not speak SMTP or IMAP (here an SSH-like banner on loopback) is
reported as such, and its banner never appears in the result: Test Connection is not a way
to read what listens on a port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from sendas.api import create_app
from sendas.context import AppContext
from sendas.imap import probe_imap
from sendas.imap.endpoint import ImapEndpoint
from sendas.smtp import SmtpEndpoint, probe
from tests.conftest import Person
from tests.net.conftest import ListenerFactory

SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n"
NOT_SMTP = [
    SSH_BANNER,
    b"HTTP/1.1 400 Bad Request\r\n\r\n",
    b"1234 secret-service v2\r\n",  # three digits, but not a reply line
    b"200 secret-service ready\r\n",  # a reply line, but not a greeting
    b"* OK IMAP4rev1 secret-service\r\n",  # IMAP on the SMTP port
]
NOT_IMAP = [SSH_BANNER, b"220 secret-service ESMTP\r\n", b"+OK secret-service POP3\r\n"]


def leaked(result: Any, banner: bytes) -> bool:
    text = json.dumps(result if isinstance(result, dict) else result.model_dump(mode="json"))
    words = [w for w in banner.decode().replace("/", " ").split() if len(w) > 3]
    return any(w in text for w in ("secret-service", "OpenSSH", "SSH-2.0", *words))


@pytest.mark.parametrize("banner", NOT_SMTP)
async def test_smtp_test_does_not_echo_a_foreign_banner(
    listener: ListenerFactory, banner: bytes
) -> None:
    trap = await listener(banner)
    endpoint = SmtpEndpoint(host=trap.host, port=trap.port, tls="none", timeout=3.0)
    result = await probe(endpoint, "alice@example.com")
    assert result.status == "FAILED" and result.step == "greeting"
    assert result.steps[-1].detail == "the server does not speak SMTP"
    assert result.server_reply == "" and "not an SMTP server" in result.hint
    assert not leaked(result, banner)
    assert trap.accepted == 1  # it did connect: the policy allowed loopback here


@pytest.mark.parametrize("greeting", [b"554 no SMTP service here\r\n", b"421 too busy\r\n"])
async def test_an_smtp_refusal_greeting_is_still_shown(
    listener: ListenerFactory, greeting: bytes
) -> None:
    trap = await listener(greeting)
    endpoint = SmtpEndpoint(host=trap.host, port=trap.port, tls="none", timeout=3.0)
    result = await probe(endpoint, "alice@example.com")
    assert result.step == "greeting" and result.server_reply == greeting.decode().strip()


@pytest.mark.parametrize("banner", NOT_IMAP)
async def test_imap_test_does_not_echo_a_foreign_banner(
    listener: ListenerFactory, banner: bytes
) -> None:
    trap = await listener(banner)
    endpoint = ImapEndpoint(
        host=trap.host, port=trap.port, username="alice", password=SecretStr("pw"),
        tls="none", timeout=3.0,
    )  # fmt: skip
    result = await probe_imap(endpoint)
    assert result.status == "FAILED" and result.step == "connect"
    assert result.steps[-1].detail == "the server does not speak IMAP"
    assert result.server_reply == ""
    assert not leaked(result, banner)


async def test_an_imap_bye_greeting_is_still_shown(listener: ListenerFactory) -> None:
    trap = await listener(b"* BYE too many connections\r\n")
    endpoint = ImapEndpoint(
        host=trap.host, port=trap.port, username="alice", password=SecretStr("pw"),
        tls="none", timeout=3.0,
    )  # fmt: skip
    result = await probe_imap(endpoint)
    assert result.step == "connect" and "too many connections" in result.server_reply


@pytest_asyncio.fixture
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx.settings, ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://sendas.test") as c:
        yield c


async def test_through_the_api_an_ssh_banner_does_not_come_back(
    api: httpx.AsyncClient, alice: Person, listener: ListenerFactory
) -> None:
    """Loopback is allowed in the test session, so these connect; neither answer repeats
    the banner (the issue's report: an SSH banner came back through the IMAP test)."""
    trap = await listener(SSH_BANNER)
    r = await api.post(
        "/api/aliases/test",
        json={"description": "x", "from_address": "alice@example.com", "tls": "none",
              "smtp_server": f"127.0.0.1:{trap.port}", "smtp_username": "alice",
              "smtp_password": "pw", "allow_plaintext_auth": True},
        headers=alice.headers,
    )  # fmt: skip
    assert r.json()["step"] == "greeting" and not leaked(r.json(), SSH_BANNER)
    r = await api.post(
        "/api/imap-accounts",
        json={"imap_server": f"127.0.0.1:{trap.port}", "tls": "none", "username": "alice",
              "password": "pw", "allow_plaintext_auth": True},
        headers=alice.headers,
    )  # fmt: skip
    result = (
        await api.post(f"/api/imap-accounts/{r.json()['id']}/test", headers=alice.headers)
    ).json()
    assert result["step"] == "connect" and not leaked(result, SSH_BANNER)
    assert trap.accepted == 2
