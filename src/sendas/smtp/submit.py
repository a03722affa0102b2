"""What is submitted and how its commands are written: :class:`Envelope` in,
:class:`SubmitResult` (or a :class:`~sendas.errors.TransportError`) out, and the MAIL FROM
and RCPT TO lines prepared before anything is written. The submission itself, pipelined or
lock-step, is :class:`~sendas.smtp.stream.SubmitStream`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sendas.errors import (
    ReplyError,
    SmtpUtf8Required,
    TransportError,
)
from sendas.smtp.hints import hint_for
from sendas.smtp.io import CRLF
from sendas.smtp.replies import LocalProblem, ReplyKind
from sendas.smtp.wire import (
    AddressProblem,
    Reply,
    frame_chunk,
    frame_data,
    needs_smtputf8,
    wire_address,
)

StartGate = Callable[[], Awaitable[None]]
"""Awaited once, right before a batch's first write (the outbox's pacing supplies it)."""

Rejected = dict[str, tuple[int, str, ReplyKind]]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to submit: the envelope sender, the recipients, the exact bytes."""

    envelope_from: str
    recipients: Sequence[str]
    data: bytes = field(repr=False)
    crlf: bool = False
    """``data`` is known to end every line with CRLF (:func:`~sendas.smtp.wire.crlf_only`,
    checked where it was composed): framing it skips that check."""


@dataclass(frozen=True)
class SubmitResult:
    """What the server said about one message.

    ``delivered`` is True iff the server answered 2xx after the end of data. ``rejected``
    maps each refused recipient to ``(code, text, kind)``. ``final_reply`` is the reply
    after the data (or to ``DATA`` itself), ``None`` when no data was sent because every
    recipient was refused.
    """

    accepted: list[str]
    rejected: Rejected
    final_reply: tuple[int, str] | None
    delivered: bool

    @property
    def kind(self) -> ReplyKind:
        """Classification of the message as a whole (``ok`` when delivered)."""
        if self.final_reply is not None:
            return Reply(*self.final_reply).kind
        kinds = [kind for _, _, kind in self.rejected.values()]
        for urgent in (ReplyKind.AUTH, ReplyKind.QUOTA, ReplyKind.RATE_LIMIT):
            if urgent in kinds:
                return urgent
        return ReplyKind.TRANSIENT if ReplyKind.TRANSIENT in kinds else ReplyKind.PERMANENT


Outcome = SubmitResult | TransportError
"""One envelope's outcome: a result from the server, or why it was not (or may not be) sent."""


# --- preparing command lines ------------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    """An envelope turned into wire lines (before anything is sent)."""

    index: int
    mail_line: bytes
    rcpts: list[tuple[str, bytes]]
    body: bytes  # after 354 (dot-stuffed, ending CRLF.CRLF), or the whole BDAT command
    bdat: bool = False


def prepare_one(index: int, envelope: Envelope, extensions: dict[str, str]) -> Prepared:
    if not envelope.recipients:
        raise ReplyError(
            "a message needs at least one recipient",
            kind=ReplyKind.PERMANENT,
            step="rcpt_to",
            hint=hint_for("rcpt_to", None, exc=LocalProblem.INVALID_ADDRESS),
        )
    addresses = [envelope.envelope_from, *envelope.recipients]
    utf8 = any(needs_smtputf8(a) for a in addresses)
    if utf8 and "SMTPUTF8" not in extensions:
        step = "mail_from" if needs_smtputf8(envelope.envelope_from) else "rcpt_to"
        raise SmtpUtf8Required(
            "an address needs SMTPUTF8, which the server does not offer; nothing was sent",
            step=step,
            hint=hint_for(step, None, exc=LocalProblem.SMTPUTF8_NOT_OFFERED),
        )
    params = b""
    if not envelope.data.isascii() and "8BITMIME" in extensions:
        params += b" BODY=8BITMIME"
    bdat = "CHUNKING" in extensions
    frame = frame_chunk if bdat else frame_data
    body = frame(envelope.data, crlf=envelope.crlf)
    if "SIZE" in extensions:  # the size of the message (not of the BDAT command line)
        params += b" SIZE=%d" % (len(body) - body.index(b"\n") - 1 if bdat else len(body))
    mail = mail_line(envelope.envelope_from, utf8, params, extensions)
    rcpts = [(r, rcpt_line(r, utf8, extensions)) for r in envelope.recipients]
    return Prepared(index, mail, rcpts, body, bdat)


def mail_line(address: str, utf8: bool, params: bytes, extensions: dict[str, str]) -> bytes:
    """``MAIL FROM:<address> params``; raises for an address that cannot be sent."""
    if utf8:
        if "SMTPUTF8" not in extensions:
            raise SmtpUtf8Required(
                "an address needs SMTPUTF8, which the server does not offer",
                step="mail_from",
                hint=hint_for("mail_from", None, exc=LocalProblem.SMTPUTF8_NOT_OFFERED),
            )
        params = b" SMTPUTF8" + params
    try:
        wire = wire_address(address, utf8)
    except AddressProblem as exc:
        raise ReplyError(
            f"invalid sender address: {exc}",
            kind=ReplyKind.PERMANENT,
            step="mail_from",
            hint=hint_for("mail_from", None, exc=LocalProblem.INVALID_ADDRESS),
        ) from None
    return b"MAIL FROM:<" + wire.encode("utf-8") + b">" + params + CRLF


def rcpt_line(address: str, utf8: bool, extensions: dict[str, str]) -> bytes:
    """``RCPT TO:<address>``; raises for an address that cannot be sent."""
    if utf8 and "SMTPUTF8" not in extensions:
        raise SmtpUtf8Required(
            "a recipient address needs SMTPUTF8, which the server does not offer",
            step="rcpt_to",
            hint=hint_for("rcpt_to", None, exc=LocalProblem.SMTPUTF8_NOT_OFFERED),
        )
    try:
        wire = wire_address(address, utf8)
    except AddressProblem as exc:
        raise ReplyError(
            f"invalid recipient address: {exc}",
            kind=ReplyKind.PERMANENT,
            step="rcpt_to",
            recipient=address,
            hint=hint_for("rcpt_to", None, exc=LocalProblem.INVALID_ADDRESS),
        ) from None
    return b"RCPT TO:<" + wire.encode("utf-8") + b">" + CRLF
