""" "Send a test message" for the database outgoing settings: one real message through the
same SMTP path as any other (connect, TLS, EHLO, AUTH, MAIL/RCPT/DATA), with the steps of a
Test Connection and a last step ``send`` saying what the server answered."""

from __future__ import annotations

from sendas.compose import Content, Sender, compose
from sendas.errors import ReplyError, TransportError, ValidationFailed
from sendas.schemas import ConnectionTestResult
from sendas.smtp import SmtpEndpoint
from sendas.smtp.session import SmtpSession
from sendas.steps import StepRecorder

SUBJECT = "sendas test message"
TEXT = (
    "This is a test message from sendas, sent with the database outgoing settings.\n"
    "It arrived, so automated mail (password resets, notifications) can go out.\n"
)


async def send_test_message(
    endpoint: SmtpEndpoint, sender: Sender, to: str
) -> ConnectionTestResult:
    """Send one short message to ``to``. Never raises a TransportError: a refusal is in the
    result (``step`` ``send`` when the server refused the message itself)."""
    recorder = StepRecorder()
    session = SmtpSession(endpoint, on_step=recorder)
    try:
        await session.open()
        with recorder.step("send") as draft:
            utf8 = "SMTPUTF8" in session.extensions
            try:
                message = compose(sender, Content(to=[to], subject=SUBJECT, text=TEXT), utf8=utf8)
            except ValidationFailed as exc:
                raise ReplyError(str(exc), kind="permanent", step="send", hint=str(exc)) from None
            result = await session.submit(message.envelope_from, message.recipients, message.data)
            if not result.delivered:
                raise _refused(result.final_reply, result.rejected.get(to))
            code, text = result.final_reply or (250, "")
            draft.detail = f"accepted for {to}: {code} {text}".strip()
        await session.quit()
    except TransportError as exc:
        found = session.tls_found
        return recorder.failed(exc).model_copy(update={"tls_found": found})
    finally:
        await session.close()
    return recorder.passed().model_copy(update={"tls_found": session.tls_found})


def _refused(final: tuple[int, str] | None, rejected: tuple[int, str, object] | None) -> ReplyError:
    code, text = (rejected[0], rejected[1]) if rejected else (final or (0, ""))
    what = "the recipient" if rejected else "the message"
    return ReplyError(
        f"the server refused {what}",
        kind="permanent",
        step="send",
        code=code or None,
        server_reply=f"{code} {text}".strip(),
        hint="The server refused the test message; its reply is shown above. Check the "
        "address, and that the account may send from the From address.",
    )
