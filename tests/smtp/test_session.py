"""SmtpSession against a real aiosmtpd server: TLS modes, AUTH exchanges, envelopes."""

from __future__ import annotations

import pytest

from sendas.errors import (
    SmtpUtf8Required,
)
from sendas.smtp import ReplyKind, SmtpSession
from tests.servers.smtpd import USER, SmtpdFactory

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
