"""SMTP: endpoints, the client session (submit, pipelined submit_many), Test Connection,
and reply classification with hints."""

from sendas.smtp.endpoint import (
    AuthKind,
    SmtpEndpoint,
    TlsMode,
    TokenProvider,
    parse_server,
    server_warnings,
)
from sendas.smtp.hints import hint_for
from sendas.smtp.probe import probe
from sendas.smtp.replies import (
    LocalProblem,
    ReplyKind,
    SmtpCode,
    classify,
    pause_until,
)
from sendas.smtp.session import SmtpSession, StepObserver
from sendas.smtp.stream import SubmitStream
from sendas.smtp.submit import Envelope, Outcome, StartGate, SubmitResult

__all__ = [
    "AuthKind",
    "Envelope",
    "LocalProblem",
    "Outcome",
    "ReplyKind",
    "SmtpCode",
    "SmtpEndpoint",
    "SmtpSession",
    "StartGate",
    "StepObserver",
    "SubmitResult",
    "SubmitStream",
    "TlsMode",
    "TokenProvider",
    "classify",
    "hint_for",
    "parse_server",
    "pause_until",
    "probe",
    "server_warnings",
]
