"""AUTH against a real aiosmtpd server: PLAIN, LOGIN, XOAUTH2 (refresh once), refusals."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from sendas.errors import (
    AuthError,
    TlsError,
)
from sendas.smtp import SmtpSession
from tests.servers.smtpd import PASSWORD, TOKEN, USER, SmtpdFactory

MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


async def test_auth_plain_exact_exchange(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    async with SmtpSession(server.endpoint()):
        pass
    [line] = server.recorder.auth_exchange
    mechanism, payload = line.split(b" ")[1:]
    assert mechanism == b"PLAIN"
    assert base64.b64decode(payload) == f"\0{USER}\0{PASSWORD}".encode()


async def test_auth_login_exact_exchange_when_plain_not_offered(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    server.recorder.advertise_auth = ["LOGIN"]
    async with SmtpSession(server.endpoint()):
        pass
    assert server.recorder.auth_exchange == [
        b"AUTH LOGIN",
        base64.b64encode(USER.encode()),
        base64.b64encode(PASSWORD.encode()),
    ]


async def test_xoauth2_sends_the_exact_bearer_line(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    calls: list[bool] = []

    async def tokens(force_refresh: bool) -> str:
        calls.append(force_refresh)
        return TOKEN

    endpoint = server.endpoint(password=None, auth="google", token_provider=tokens)
    server.recorder.advertise_auth = ["XOAUTH2", "PLAIN"]
    async with SmtpSession(endpoint) as session:
        result = await session.submit(USER, ["bob@example.test"], MESSAGE)
    assert result.delivered
    assert calls == [False]
    [line] = server.recorder.auth_exchange
    assert line.startswith(b"AUTH XOAUTH2 ")
    assert base64.b64decode(line.split(b" ")[2]) == (
        f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode()
    )


async def test_xoauth2_refreshes_a_rejected_token_once(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    server.recorder.advertise_auth = ["XOAUTH2"]
    calls: list[bool] = []

    async def tokens(force_refresh: bool) -> str:
        calls.append(force_refresh)
        return TOKEN if force_refresh else "expired-token"

    endpoint = server.endpoint(password=None, auth="microsoft", token_provider=tokens)
    async with SmtpSession(endpoint) as session:
        assert session.usable
    assert calls == [False, True]
    tokens_seen = [p.split(b"\x01")[1] for p in server.recorder.xoauth2_payloads]
    assert tokens_seen == [b"auth=Bearer expired-token", f"auth=Bearer {TOKEN}".encode()]
    # the empty line that ends Google's/Microsoft's JSON error challenge was sent
    assert b"" in server.recorder.auth_exchange


async def test_xoauth2_rejected_twice_is_an_auth_error(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    server.recorder.advertise_auth = ["XOAUTH2"]

    async def tokens(force_refresh: bool) -> str:
        return "revoked-token"

    endpoint = server.endpoint(password=None, auth="google", token_provider=tokens)
    with pytest.raises(AuthError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "auth"
    assert caught.value.code == 535
    assert "revoked-token" not in repr(caught.value) + str(caught.value)
    assert len(server.recorder.xoauth2_payloads) == 2


async def test_wrong_password_is_an_auth_error_without_the_password(
    smtpd: SmtpdFactory,
) -> None:
    server = await smtpd("starttls")
    endpoint = server.endpoint(password=SecretStr("wrong-secret"))
    with pytest.raises(AuthError) as caught:
        await SmtpSession(endpoint).open()
    error = caught.value
    assert error.step == "auth"
    assert error.code == 535
    assert error.server_reply.startswith("535")
    assert "user name or password" in error.hint
    for text in (str(error), repr(error), error.server_reply, error.hint, repr(endpoint)):
        assert "wrong-secret" not in text
    assert server.recorder.messages == []


async def test_no_tls_refuses_plaintext_password_unless_allowed(smtpd: SmtpdFactory) -> None:
    server = await smtpd("none")
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint(allow_plaintext_auth=False)).open()
    assert caught.value.step == "auth"
    assert "unencrypted" in caught.value.hint
    assert server.recorder.lines_starting(b"AUTH") == []

    async with SmtpSession(server.endpoint(allow_plaintext_auth=True)) as session:
        assert session.usable
    assert len(server.recorder.lines_starting(b"AUTH")) == 1


async def test_no_credentials_skips_auth(smtpd: SmtpdFactory) -> None:
    server = await smtpd("none")
    endpoint = server.endpoint(username="", password=None)
    async with SmtpSession(endpoint) as session:
        result = await session.submit("robot@example.test", ["bob@example.test"], MESSAGE)
    assert result.delivered
    assert server.recorder.lines_starting(b"AUTH") == []
