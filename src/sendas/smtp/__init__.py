"""SMTP: endpoints, the client session (submit, pipelined submit_many), Test Connection,
and reply classification with hints."""

from sendas.smtp.endpoint import SmtpEndpoint, parse_server, server_warnings
from sendas.smtp.probe import probe
from sendas.smtp.replies import ReplyKind, SmtpCode, classify, hint_for, pause_until
from sendas.smtp.transport import Envelope, SmtpSession, SubmitResult

__all__ = [
    "Envelope",
    "ReplyKind",
    "SmtpCode",
    "SmtpEndpoint",
    "SmtpSession",
    "SubmitResult",
    "classify",
    "hint_for",
    "parse_server",
    "pause_until",
    "probe",
    "server_warnings",
]
