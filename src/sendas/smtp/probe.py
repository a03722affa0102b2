"""Test Connection for SMTP: walk every step up to ``RCPT TO``, then ``RSET``/``QUIT``.
No message is ever sent. Stops at the first failure and says where and why."""

from __future__ import annotations

from sendas.errors import TransportError
from sendas.schemas import ConnectionTestResult
from sendas.smtp.endpoint import SmtpEndpoint
from sendas.smtp.session import SmtpSession
from sendas.steps import StepRecorder


async def probe(endpoint: SmtpEndpoint, from_address: str) -> ConnectionTestResult:
    """Resolve, connect, TLS, EHLO, AUTH, ``MAIL FROM:<from_address>``, ``RCPT TO`` the from
    address itself, ``RSET``, ``QUIT``. Never raises a TransportError: failures are in the
    result."""
    recorder = StepRecorder()
    session = SmtpSession(endpoint, on_step=recorder)
    try:
        await session.open()
        await session.mail_from(from_address)
        await session.rcpt_to(from_address)
        await session.rset()
        await session.quit()
    except TransportError as exc:
        failed = recorder.failed(exc)
        return failed.model_copy(update={"tls_found": session.tls_found})
    finally:
        await session.close()
    return recorder.passed().model_copy(update={"tls_found": session.tls_found})
