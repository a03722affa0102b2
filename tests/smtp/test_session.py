"""SmtpSession against a real aiosmtpd server: TLS modes, AUTH exchanges, envelopes."""

from __future__ import annotations

import base64

import pytest
import trustme
from pydantic import SecretStr

from sendas.errors import (
    AuthError,
    MailConnectionError,
    MailTimeoutError,
    SmtpUtf8Required,
    TlsError,
)
from sendas.smtp import ReplyKind, SmtpSession
from tests.servers.smtpd import PASSWORD, TOKEN, USER, SmtpdFactory

MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.mark.parametrize("tls", ["implicit", "starttls", "none"])
async def test_sends_a_message_in_each_tls_mode(smtpd: SmtpdFactory, tls: str) -> None:
    server = await smtpd(tls)
    async with SmtpSession(server.endpoint()) as session:
        assert session.tls_active is (tls != "none")
        result = await session.submit(USER, ["bob@example.test"], MESSAGE)
    assert result.delivered
    assert result.accepted == ["bob@example.test"]
    assert result.final_reply is not None and result.final_reply[0] == 250
    [received] = server.recorder.messages
    assert received.mail_from == USER
    assert received.rcpt_tos == ["bob@example.test"]
    assert received.data == MESSAGE
    commands = server.recorder.commands
    assert (b"STARTTLS" in commands) is (tls == "starttls")
    assert commands[-1] == b"QUIT"


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


async def test_starttls_required_but_not_offered_sends_no_credentials(
    smtpd: SmtpdFactory,
) -> None:
    server = await smtpd("starttls", offer_starttls=False)
    assert server.recorder.script == {}
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint(allow_plaintext_auth=True)).open()
    assert caught.value.step == "starttls"
    assert "STARTTLS" in caught.value.hint
    assert server.recorder.lines_starting(b"AUTH") == []
    assert server.recorder.auth_exchange == []


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


async def test_untrusted_certificate_fails_at_tls_step(
    smtpd: SmtpdFactory, unknown_ca: trustme.CA
) -> None:
    server = await smtpd("implicit")
    endpoint = server.endpoint(ca_bundle_pem=unknown_ca.cert_pem.bytes().decode())
    with pytest.raises(TlsError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "tls"
    assert "CA certificate" in caught.value.hint
    assert "never switched off" in caught.value.hint
    assert server.recorder.commands == []


async def test_untrusted_certificate_after_starttls_sends_no_credentials(
    smtpd: SmtpdFactory,
) -> None:
    server = await smtpd("starttls")
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint(ca_bundle_pem=None)).open()
    assert caught.value.step == "starttls"
    assert server.recorder.lines_starting(b"AUTH") == []


async def test_certificate_for_another_name_is_refused(
    smtpd: SmtpdFactory, tls_ca: trustme.CA
) -> None:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("mail.other.test").configure_cert(context)
    server = await smtpd("implicit", ssl_context=context)
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint()).open()
    assert "different name" in caught.value.hint


async def test_ssl_cert_file_is_honoured(
    smtpd: SmtpdFactory, tls_ca: trustme.CA, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    bundle = Path(str(tmp_path)) / "ca.pem"
    bundle.write_bytes(tls_ca.cert_pem.bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    server = await smtpd("implicit")
    async with SmtpSession(server.endpoint(ca_bundle_pem=None)) as session:
        assert session.tls_active


async def test_starttls_port_probed_as_implicit_tls_names_the_fix(smtpd: SmtpdFactory) -> None:
    server = await smtpd("starttls")
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint(tls="implicit")).open()
    assert caught.value.step == "tls"
    assert "587" in caught.value.hint and "STARTTLS" in caught.value.hint


async def test_never_greeting_server_times_out_at_greeting(silent_server: int) -> None:
    from sendas.smtp import SmtpEndpoint

    endpoint = SmtpEndpoint("127.0.0.1", silent_server, "none", timeout=0.5)
    with pytest.raises(MailTimeoutError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "greeting"
    assert isinstance(caught.value, TimeoutError)
    assert "465" in caught.value.hint


async def test_connection_refused_names_connect_step() -> None:
    import socket

    from sendas.smtp import SmtpEndpoint

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = SmtpEndpoint("127.0.0.1", port, "none", timeout=1)
    with pytest.raises(MailConnectionError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "connect"
    assert "port" in caught.value.hint


async def test_unknown_host_fails_at_resolve() -> None:
    from sendas.smtp import SmtpEndpoint

    endpoint = SmtpEndpoint("no-such-host.invalid", 587, "starttls", timeout=2)
    with pytest.raises(MailConnectionError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "resolve"


async def test_smtputf8_used_when_needed_and_offered(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit", smtputf8=True)
    async with SmtpSession(server.endpoint()) as session:
        result = await session.submit(USER, ["jürgen@bücher.example"], MESSAGE)
    assert result.delivered
    [mail] = server.recorder.lines_starting(b"MAIL")
    assert b" SMTPUTF8" in mail
    assert server.recorder.messages[0].rcpt_tos == ["jürgen@bücher.example"]


async def test_smtputf8_required_but_not_offered_sends_nothing(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    async with SmtpSession(server.endpoint()) as session:
        with pytest.raises(SmtpUtf8Required) as caught:
            await session.submit(USER, ["jürgen@example.test"], MESSAGE)
    assert caught.value.step == "rcpt_to"
    assert server.recorder.lines_starting(b"MAIL") == []
    assert server.recorder.lines_starting(b"RCPT") == []


async def test_idn_domain_goes_in_idna_form_without_smtputf8(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    async with SmtpSession(server.endpoint()) as session:
        result = await session.submit(USER, ["info@bücher.example"], MESSAGE)
    assert result.delivered
    assert server.recorder.messages[0].rcpt_tos == ["info@xn--bcher-kva.example"]
    framed_size = len(MESSAGE) + len(b".\r\n")
    [mail] = server.recorder.lines_starting(b"MAIL")
    assert mail == f"MAIL FROM:<{USER}> SIZE={framed_size}".encode()


async def test_partial_rejection_sends_to_accepted_recipients(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    server.recorder.script["RCPT"] = lambda arg: (
        "550 5.1.1 <nobody@example.test>: no such user" if "nobody" in arg else None
    )
    async with SmtpSession(server.endpoint()) as session:
        result = await session.submit(
            USER, ["bob@example.test", "nobody@example.test", "carol@example.test"], MESSAGE
        )
    assert result.delivered
    assert result.accepted == ["bob@example.test", "carol@example.test"]
    code, text, kind = result.rejected["nobody@example.test"]
    assert (code, kind) == (550, ReplyKind.PERMANENT)
    assert "no such user" in text
    assert server.recorder.messages[0].rcpt_tos == ["bob@example.test", "carol@example.test"]


async def test_all_recipients_rejected_means_rset_and_no_data(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    server.recorder.script["RCPT"] = "550 5.1.1 no such user"
    async with SmtpSession(server.endpoint()) as session:
        result = await session.submit(USER, ["x@example.test", "y@example.test"], MESSAGE)
        assert not result.delivered
        assert result.final_reply is None
        assert set(result.rejected) == {"x@example.test", "y@example.test"}
        server.recorder.script.clear()
        again = await session.submit(USER, ["bob@example.test"], MESSAGE)
    assert again.delivered
    assert server.recorder.lines_starting(b"DATA") == [b"DATA"]
    assert server.recorder.lines_starting(b"RSET") == [b"RSET"]
    assert len(server.recorder.messages) == 1


async def test_dot_stuffing_and_bare_newlines(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    body = b"Subject: dots\n\n.leading dot\n..two dots\nend"
    async with SmtpSession(server.endpoint()) as session:
        result = await session.submit(USER, ["bob@example.test"], body)
    assert result.delivered
    assert server.recorder.messages[0].data == (
        b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nend\r\n"
    )


async def test_connection_reused_for_many_messages(smtpd: SmtpdFactory) -> None:
    server = await smtpd("starttls")
    async with SmtpSession(server.endpoint()) as session:
        for n in range(5):
            result = await session.submit(USER, [f"r{n}@example.test"], MESSAGE)
            assert result.delivered
    assert server.recorder.connections == 1
    assert len(server.recorder.messages) == 5
    assert server.recorder.lines_starting(b"RSET") == []
