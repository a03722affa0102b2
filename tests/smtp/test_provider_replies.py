"""Every provider reply of PROVIDERS.md, scripted into a real server, mapped to its hint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sendas.errors import AuthError, ReplyError
from sendas.smtp import ReplyKind, SmtpSession, pause_until, probe
from tests.servers.smtpd import USER, SmtpdFactory

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

# (command scripted, reply, failing step, kind, words the hint must contain)
SESSION_REPLIES = [
    (
        "AUTH",
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
        "for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
        "auth",
        ReplyKind.AUTH,
        "Authenticated SMTP",
    ),
    (
        "AUTH",
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
        "for the Mailbox.",
        "auth",
        ReplyKind.AUTH,
        "administrator must switch it on",
    ),
    (
        "AUTH",
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        "auth",
        ReplyKind.AUTH,
        "Sign in with Microsoft",
    ),
    (
        "AUTH",
        "550 5.7.30 Basic authentication is not supported for Client Submission.",
        "auth",
        ReplyKind.AUTH,
        "Sign in with Microsoft",
    ),
    (
        "AUTH",
        "535 5.7.3 Authentication unsuccessful [BN0PR04CA0001.namprd04.prod.outlook.com]",
        "auth",
        ReplyKind.AUTH,
        "SMTP.Send",
    ),
    (
        "AUTH",
        [
            "534-5.7.9 Application-specific password required. Learn more at",
            "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp",
        ],
        "auth",
        ReplyKind.AUTH,
        "app password",
    ),
    (
        "AUTH",
        [
            "535-5.7.8 Username and Password not accepted. For more information, go to",
            "535 5.7.8  https://support.google.com/mail/?p=BadCredentials - gsmtp",
        ],
        "auth",
        ReplyKind.AUTH,
        "Google did not accept",
    ),
    (
        "AUTH",
        "454 4.7.0 Too many login attempts, please try again later. - gsmtp",
        "auth",
        ReplyKind.RATE_LIMIT,
        "raise the alias's delay",
    ),
    (
        "MAIL",
        "554 5.2.252 SendAsDenied; alice@example.test not allowed to send as "
        "boss@example.test; STOREDRV.Submission.Exception:"
        "SendAsDeniedException.MapiExceptionSendAsDenied",
        "mail_from",
        ReplyKind.PERMANENT,
        "Send As",
    ),
    (
        "MAIL",
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        "mail_from",
        ReplyKind.PERMANENT,
        "Send As",
    ),
    (
        "MAIL",
        "421 4.7.0 Try again later, closing connection. (MAIL) - gsmtp",
        "mail_from",
        ReplyKind.RATE_LIMIT,
        "raise the alias's delay",
    ),
    (
        "MAIL",
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
        "mail_from",
        ReplyKind.RATE_LIMIT,
        "one connection per mailbox",
    ),
    (
        "MAIL",
        "454 Throttling failure: Maximum sending rate exceeded.",
        "mail_from",
        ReplyKind.RATE_LIMIT,
        "Amazon SES",
    ),
    (
        "MAIL",
        "550 5.4.5 Daily user sending quota exceeded. - gsmtp",
        "mail_from",
        ReplyKind.QUOTA,
        "daily sending quota",
    ),
    (
        "RCPT",
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        "rcpt_to",
        ReplyKind.PERMANENT,
        "Send As",
    ),
]


@pytest.mark.parametrize(("command", "reply", "step", "kind", "words"), SESSION_REPLIES)
async def test_provider_reply_in_test_connection(
    smtpd: SmtpdFactory,
    command: str,
    reply: str | list[str],
    step: str,
    kind: ReplyKind,
    words: str,
) -> None:
    server = await smtpd("starttls")
    server.recorder.script[command] = reply
    result = (await probe(server.endpoint(), USER)).model_dump()
    assert result["status"] == "FAILED"
    assert result["step"] == step
    first = reply[0] if isinstance(reply, list) else reply
    assert result["server_reply"].startswith(first[:3])
    assert words in result["hint"]
    assert server.recorder.messages == []


@pytest.mark.parametrize(("command", "reply", "step", "kind", "words"), SESSION_REPLIES)
async def test_provider_reply_raises_classified_error(
    smtpd: SmtpdFactory,
    command: str,
    reply: str | list[str],
    step: str,
    kind: ReplyKind,
    words: str,
) -> None:
    server = await smtpd("implicit")
    server.recorder.script[command] = reply
    if step == "rcpt_to":
        async with SmtpSession(server.endpoint()) as session:
            result = await session.submit(USER, ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert not result.delivered
        assert result.rejected["bob@example.test"][2] == kind
        return
    with pytest.raises((ReplyError, AuthError)) as caught:
        async with SmtpSession(server.endpoint()) as session:
            await session.submit(USER, ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
    error = caught.value
    assert error.step == step
    assert words in error.hint
    expected_type = AuthError if kind is ReplyKind.AUTH else ReplyError
    assert type(error) is expected_type
    if isinstance(error, ReplyError):
        assert error.kind == kind
    assert server.recorder.messages == []


DATA_REPLIES = [
    ("550 5.4.5 Daily user sending quota exceeded. - gsmtp", ReplyKind.QUOTA, "daily"),
    (
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
        "process message due to a permanent exception",
        ReplyKind.QUOTA,
        "Microsoft",
    ),
    ("421 4.7.0 Try again later, closing connection. - gsmtp", ReplyKind.RATE_LIMIT, "delay"),
    ("454 Throttling failure: Maximum sending rate exceeded.", ReplyKind.RATE_LIMIT, "SES"),
]


@pytest.mark.parametrize(("reply", "kind", "words"), DATA_REPLIES)
async def test_quota_and_rate_replies_after_data(
    smtpd: SmtpdFactory, reply: str, kind: ReplyKind, words: str
) -> None:
    from sendas.smtp import hint_for

    server = await smtpd("implicit")
    server.recorder.script["DATA_END"] = reply
    async with SmtpSession(server.endpoint()) as session:
        result = await session.submit(USER, ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
    assert not result.delivered
    assert result.kind is kind
    assert result.final_reply is not None
    code, text = result.final_reply
    assert words in hint_for("data", code, text)
    resume = pause_until(result.kind, code, text, NOW)
    assert resume is not None and resume > NOW


def test_pause_lengths_follow_the_reply() -> None:
    daily = pause_until(ReplyKind.QUOTA, 550, "5.4.5 Daily user sending quota exceeded.", NOW)
    minutes = pause_until(ReplyKind.RATE_LIMIT, 421, "4.7.0 Try again later", NOW)
    ses = pause_until(ReplyKind.RATE_LIMIT, 454, "Throttling failure: Maximum sending rate", NOW)
    stated = pause_until(ReplyKind.RATE_LIMIT, 450, "4.7.0 try again in 90 seconds", NOW)
    assert daily is not None and daily - NOW >= timedelta(hours=1)
    assert minutes is not None and timedelta(minutes=1) <= minutes - NOW <= timedelta(hours=1)
    assert ses is not None and ses - NOW < timedelta(minutes=1)
    assert stated == NOW + timedelta(seconds=90)
    assert pause_until(ReplyKind.PERMANENT, 550, "5.1.1 no such user", NOW) is None


_BASIC_OFF = "5.7.30 Basic authentication is not supported for Client Submission."
_MAILBOX_OFF = (
    "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox."
)
_BASIC_DISABLED = "5.7.139 Authentication unsuccessful, basic authentication is disabled."


@pytest.mark.parametrize(
    ("code", "text", "words"),
    [
        (550, _BASIC_OFF, "Sign in with Microsoft"),
        (550, _BASIC_OFF, "tenant administrator"),
        (535, _MAILBOX_OFF, "Authenticated SMTP"),
        (535, _BASIC_DISABLED, "Sign in with Microsoft"),
        (535, "5.7.3 Authentication unsuccessful", "Sign in with Microsoft"),
        (534, "5.7.9 Application-specific password required.", "create an app password"),
        (534, "5.7.9 Application-specific password required.", "Sign in with Google"),
        (535, "5.7.8 Username and Password not accepted.", "app password"),
    ],
)  # fmt: skip
def test_sign_in_refusals_say_what_to_do(code: int, text: str, words: str) -> None:
    from sendas.smtp import classify, hint_for

    assert classify(code, text) is ReplyKind.AUTH
    assert words in hint_for("auth", code, text)
