"""Submitting messages over an open connection: :class:`Envelope` in, :class:`SubmitResult`
out. Command lines are prepared before anything is written; then the batch goes lock-step
(one command, one reply) or pipelined (RFC 2920: a message's commands in one write, the next
message's commands right after its predecessor's data, one round trip per message).

When the server offers CHUNKING (RFC 3030) the data goes as ``BDAT <size> LAST`` with the
exact bytes (no dot-stuffing); with PIPELINING too, a message's MAIL, RCPTs and BDAT go in
one write, and several messages are written ahead of their replies (:data:`CHUNK_WINDOW`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sendas.errors import (
    DeliveryUnknown,
    MailConnectionError,
    ReplyError,
    SmtpUtf8Required,
    TransportError,
)
from sendas.smtp.hints import hint_for
from sendas.smtp.io import CRLF, SmtpIO, reply_error
from sendas.smtp.replies import LocalProblem, ReplyKind, SmtpCode
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

CHUNK_WINDOW = 8
"""Messages written ahead of their replies with PIPELINING and CHUNKING: a slow link carries
several at once. A connection lost leaves at most this many ``unknown``."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to submit: the envelope sender, the recipients, the exact bytes."""

    envelope_from: str
    recipients: Sequence[str]
    data: bytes = field(repr=False)


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


def prepare(
    batch: Sequence[Envelope], extensions: dict[str, str]
) -> tuple[list[Prepared], list[Outcome | None]]:
    """The batch's command lines, and a result slot per envelope (already filled with the
    error for an envelope that cannot be sent as it is)."""
    results: list[Outcome | None] = [None] * len(batch)
    todo: list[Prepared] = []
    for index, envelope in enumerate(batch):
        try:
            todo.append(_prepare_one(index, envelope, extensions))
        except TransportError as exc:
            results[index] = exc
    return todo, results


def _prepare_one(index: int, envelope: Envelope, extensions: dict[str, str]) -> Prepared:
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
    body = frame_chunk(envelope.data) if bdat else frame_data(envelope.data)
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


# --- submission -------------------------------------------------------------------------


@dataclass(slots=True)
class _InFlight:
    """A message whose DATA got 354: its body goes first in the next write."""

    msg: Prepared
    accepted: list[str]
    rejected: Rejected
    discard: bool = False  # the server said 354 although we have nothing to send


class Submission:
    """One batch over one connection; fills ``results`` by envelope index.

    ``in_transaction`` says whether the server may still hold an open transaction (the
    next batch starts with RSET); ``mail_sent_at`` is ``time.monotonic()`` just after the
    first MAIL FROM was handed to the socket (None: it never was).
    """

    def __init__(self, io: SmtpIO, results: list[Outcome | None], in_transaction: bool) -> None:
        self.io = io
        self.results = results
        self.in_transaction = in_transaction
        self.mail_sent_at: float | None = None

    def _send_mail(self, data: bytes) -> None:
        self.io.send(data, "mail_from")
        if self.mail_sent_at is None:
            # Taken after the write: a thread switch before it cannot make it look earlier.
            self.mail_sent_at = time.monotonic()

    # --- lock-step ---

    async def lockstep(self, todo: list[Prepared]) -> None:
        for msg in todo:
            if not self.io.usable:
                return
            try:
                self.results[msg.index] = await self._transaction(msg)
            except TransportError as exc:
                self.results[msg.index] = exc

    async def _transaction(self, msg: Prepared) -> SubmitResult:
        io = self.io
        if self.in_transaction:
            await self._rset_quietly()
        self._send_mail(msg.mail_line)
        await io.drain("mail_from")
        mail = await io.read("mail_from")
        if not mail.ok:
            raise reply_error("mail_from", mail)
        self.in_transaction = True
        accepted: list[str] = []
        rejected: Rejected = {}
        for address, line in msg.rcpts:
            reply = await io.command(line, "rcpt_to")
            if reply.ok:
                accepted.append(address)
            else:
                rejected[address] = (reply.code, reply.text, reply.kind)
                if io.broken:  # 421: the server is closing the connection
                    raise reply_error("rcpt_to", reply, recipient=address)
        if not accepted:
            await self._rset_quietly()
            return SubmitResult(accepted, rejected, None, delivered=False)
        if msg.bdat:
            return await self._chunk(msg, accepted, rejected)
        data = await io.command(b"DATA\r\n", "data")
        if data.code != SmtpCode.START_MAIL_INPUT:
            await self._rset_quietly()
            return SubmitResult(accepted, rejected, (data.code, data.text), delivered=False)
        try:
            await io.write(msg.body, "data")
            final = await io.read("data")
        except TransportError as exc:
            raise unknown(exc) from None
        self.in_transaction = False
        return SubmitResult(accepted, rejected, (final.code, final.text), delivered=final.ok)

    async def _chunk(self, msg: Prepared, accepted: list[str], rejected: Rejected) -> SubmitResult:
        """``BDAT <size> LAST`` and the bytes in one write, then its reply."""
        try:
            await self.io.write(msg.body, "data")
            final = await self.io.read("data")
        except TransportError as exc:
            raise unknown(exc) from None
        # A refused chunk may leave the transaction open: the next one starts with RSET.
        self.in_transaction = not final.ok
        return SubmitResult(accepted, rejected, (final.code, final.text), delivered=final.ok)

    async def _rset_quietly(self) -> None:
        if self.io.usable:
            await self.io.command(b"RSET\r\n", "rset")
            self.in_transaction = False

    # --- pipelined with CHUNKING ---

    async def chunked(self, todo: list[Prepared]) -> None:
        """Each message's [RSET] MAIL RCPT... BDAT in one write, up to :data:`CHUNK_WINDOW`
        messages ahead of their replies. Every message but the first starts with RSET, so
        that one refused (no open transaction, or one left open) cannot affect the next."""
        queue = deque(todo)
        flight: deque[tuple[Prepared, bool]] = deque()  # written, replies not read yet
        rset = self.in_transaction
        while queue or flight:
            while queue and len(flight) < CHUNK_WINDOW and not self.io.broken:
                msg = queue.popleft()
                if not self._write_chunked(msg, rset, flight):
                    return
                flight.append((msg, rset))
                rset = True
            if not flight:
                return  # 421: the server is closing; the rest were not sent
            msg, rset_sent = flight.popleft()
            try:
                await self.io.drain("data")
                ok = await self._read_chunked(msg, rset_sent)
            except TransportError as exc:
                if self.io.broken:  # 421: refused, and nothing after it was read
                    self.results[msg.index] = exc
                    self._lost_chunked(not_sent(), [m for m, _ in flight])
                else:
                    self._lost_chunked(exc, [msg, *(m for m, _ in flight)])
                return
            self.in_transaction = not ok
            if self.io.broken:
                self._lost_chunked(not_sent(), [m for m, _ in flight])
                return

    def _write_chunked(
        self, msg: Prepared, rset: bool, flight: deque[tuple[Prepared, bool]]
    ) -> bool:
        lines = [b"RSET\r\n"] if rset else []
        lines += [msg.mail_line, *(line for _, line in msg.rcpts), msg.body]
        try:
            if self.mail_sent_at is None:
                self._send_mail(b"".join(lines))
            else:
                self.io.send(b"".join(lines), "data")
        except TransportError as exc:
            self.results[msg.index] = exc if not flight else not_sent()
            self._lost_chunked(exc, [m for m, _ in flight])
            return False
        return True

    def _lost_chunked(self, exc: TransportError, written: list[Prepared]) -> None:
        """The link broke: messages whose chunk was written may have been accepted."""
        for msg in written:
            if self.results[msg.index] is None:
                self.results[msg.index] = unknown(exc)

    async def _read_chunked(self, msg: Prepared, rset_sent: bool) -> bool:
        """Read the replies to [RSET] MAIL RCPT... BDAT; True if the message went through."""
        if rset_sent:
            await self._read_or_raise("rset")
        mail = await self._read_or_raise("mail_from")
        accepted: list[str] = []
        rejected: Rejected = {}
        for address, _ in msg.rcpts:
            reply = await self._read_or_raise("rcpt_to", recipient=address)
            if reply.ok:
                accepted.append(address)
            else:
                rejected[address] = (reply.code, reply.text, reply.kind)
        final = await self.io.read("data")
        if not mail.ok:
            self.results[msg.index] = reply_error("mail_from", mail)
        elif not accepted:
            self.results[msg.index] = SubmitResult([], rejected, None, delivered=False)
        else:
            self.results[msg.index] = SubmitResult(
                accepted, rejected, (final.code, final.text), delivered=final.ok
            )
        return bool(mail.ok and accepted and final.ok)

    # --- pipelined ---

    async def pipelined(self, todo: list[Prepared]) -> None:
        queue = deque(todo)
        pending: _InFlight | None = None
        need_rset = self.in_transaction
        while queue or pending is not None:
            current = queue.popleft() if queue and not self.io.broken else None
            rset_sent = need_rset and current is not None
            if not self._write_round(pending, current, rset_sent):
                return
            if not await self._drain_round(pending, current):
                return
            if pending is not None:
                if not await self._finish(pending):
                    return
                need_rset = need_rset or pending.discard
                pending = None
                if current is not None and self.io.broken:
                    return  # 421 after the data: the server is closing; current not sent
            if current is None:
                continue
            try:
                pending, need_rset = await self._read_replies(current, rset_sent)
            except TransportError as exc:
                self.results[current.index] = exc
                return
            if self.io.broken:
                return
        self.in_transaction = need_rset

    def _write_round(
        self, pending: _InFlight | None, current: Prepared | None, rset_sent: bool
    ) -> bool:
        """Hand the previous message's data and the next message's commands to the socket
        in one write; False (outcomes recorded) when the link is gone."""
        chunks: list[bytes] = []
        if pending is not None:
            chunks.append(b".\r\n" if pending.discard else pending.msg.body)
        if current is not None:
            if rset_sent:
                chunks.append(b"RSET\r\n")
            chunks.append(current.mail_line)
            chunks.extend(line for _, line in current.rcpts)
            chunks.append(b"DATA\r\n")
        try:
            if pending is None:
                self._send_mail(b"".join(chunks))
            else:
                self.io.send(b"".join(chunks), "data")
        except TransportError as exc:
            self._lost(exc, pending, current)
            return False
        return True

    async def _drain_round(self, pending: _InFlight | None, current: Prepared | None) -> bool:
        try:
            await self.io.drain("data" if pending else "mail_from")
        except TransportError as exc:
            self._lost(exc, pending, current)
            return False
        return True

    def _lost(
        self, exc: TransportError, pending: _InFlight | None, current: Prepared | None
    ) -> None:
        if pending is not None and not pending.discard:
            self.results[pending.msg.index] = unknown(exc)
        if current is not None:
            self.results[current.index] = exc if pending is None else not_sent()

    async def _finish(self, pending: _InFlight) -> bool:
        """Read the reply after a message's data; False when the link broke."""
        try:
            final = await self.io.read("data")
        except TransportError as exc:
            if not pending.discard:
                self.results[pending.msg.index] = unknown(exc)
            return False
        if not pending.discard:
            self.results[pending.msg.index] = SubmitResult(
                pending.accepted, pending.rejected, (final.code, final.text), delivered=final.ok
            )
        return True

    async def _read_replies(self, msg: Prepared, rset_sent: bool) -> tuple[_InFlight | None, bool]:
        """Read the replies to [RSET] MAIL RCPT... DATA; return (in-flight, need_rset)."""
        if rset_sent:
            await self._read_or_raise("rset")
        mail = await self._read_or_raise("mail_from")
        accepted: list[str] = []
        rejected: Rejected = {}
        for address, _ in msg.rcpts:
            reply = await self._read_or_raise("rcpt_to", recipient=address)
            if reply.ok:
                accepted.append(address)
            else:
                rejected[address] = (reply.code, reply.text, reply.kind)
        data = await self._read_or_raise("data")
        went_354 = data.code == SmtpCode.START_MAIL_INPUT
        if not mail.ok:
            self.results[msg.index] = reply_error("mail_from", mail)
            return (_InFlight(msg, [], {}, discard=True) if went_354 else None), False
        if not accepted:
            self.results[msg.index] = SubmitResult([], rejected, None, delivered=False)
            return (_InFlight(msg, [], {}, discard=True) if went_354 else None), True
        if not went_354:
            self.results[msg.index] = SubmitResult(
                accepted, rejected, (data.code, data.text), delivered=False
            )
            return None, True
        return _InFlight(msg, accepted, rejected), False

    async def _read_or_raise(self, step: str, *, recipient: str | None = None) -> Reply:
        """One reply; a 421 (the server is closing) raises as the refusal it is."""
        reply = await self.io.read(step)
        if self.io.broken:
            raise reply_error(step, reply, recipient=recipient)
        return reply


def unknown(cause: TransportError) -> DeliveryUnknown:
    return DeliveryUnknown(
        "the link broke after the message data was sent; the server may have accepted it "
        f"({cause})",
        step="data",
        hint="Check the recipient's mailbox or the Sent folder, then choose 'send again' or "
        "'mark as sent'.",
    )


def not_sent() -> MailConnectionError:
    return MailConnectionError(
        "not sent: the connection was lost before this message",
        step="mail_from",
        hint="The message will be sent again over a new connection.",
    )
