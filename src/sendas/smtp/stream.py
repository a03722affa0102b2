"""Submitting messages over an open connection: envelopes fed one at a time, outcomes
taken in order as the replies arrive. Lock-step (one command, one reply) without
PIPELINING; with it (RFC 2920) a message's commands in one write, the next message's
commands right after its predecessor's data, one round trip per message.

When the server offers CHUNKING (RFC 3030) the data goes as ``BDAT <size> LAST`` with the
exact bytes (no dot-stuffing); with PIPELINING too, a message's MAIL, RCPTs and BDAT go in
one write, and several messages are written ahead of their replies (the window).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from sendas.errors import (
    DeliveryUnknown,
    MailConnectionError,
    TransportError,
)
from sendas.smtp.io import SmtpIO, reply_error
from sendas.smtp.replies import SmtpCode
from sendas.smtp.submit import (
    Envelope,
    Outcome,
    Prepared,
    Rejected,
    StartGate,
    SubmitResult,
    prepare_one,
)
from sendas.smtp.wire import Reply

CHUNK_WINDOW = 8
"""Messages written ahead of their replies with PIPELINING and CHUNKING: a slow link carries
several at once. A connection lost leaves at most this many ``unknown``."""


@dataclass(slots=True)
class _InFlight:
    """A message whose DATA got 354: its body goes first in the next write."""

    msg: Prepared
    accepted: list[str]
    rejected: Rejected
    discard: bool = False  # the server said 354 although we have nothing to send


@dataclass(slots=True)
class _Replies:
    """The replies to a message's [RSET] MAIL RCPT...: what DATA or BDAT reply comes after."""

    mail: Reply
    accepted: list[str]
    rejected: Rejected


class SubmitStream:
    """Envelopes fed one at a time (:meth:`feed`) over one connection; their outcomes taken
    in feed order as the replies arrive (:meth:`next`).

    With PIPELINING and CHUNKING a message's [RSET] MAIL RCPT... BDAT go in one write, up
    to ``window`` messages ahead of their replies. With PIPELINING alone (RFC 2920) the
    commands up to DATA go in one write and the body waits for the 354 (a sync point): the
    previous message's body and the next message's commands share a write, one round trip
    per message. Without PIPELINING, one command, one reply.

    ``in_transaction`` says whether the server may still hold an open transaction (the
    next message starts with RSET); ``mail_sent_at`` is ``time.monotonic()`` just after the
    first MAIL FROM was handed to the socket (None: it never was). A link lost makes the
    messages written ahead :class:`DeliveryUnknown`, the ones not written a
    :class:`MailConnectionError` (not sent).
    """

    def __init__(
        self,
        io: SmtpIO,
        extensions: dict[str, str],
        *,
        in_transaction: bool,
        window: int = CHUNK_WINDOW,
        start_gate: StartGate | None = None,
    ) -> None:
        self.io = io
        self.extensions = extensions
        self.in_transaction = in_transaction
        self.mail_sent_at: float | None = None
        self.window = max(1, window)
        self._gate = start_gate
        self._queue: deque[Prepared] = deque()
        self._results: dict[int, Outcome] = {}
        self._fed = 0
        self._taken = 0
        self._closed = False
        self._done = False
        self._fed_event = asyncio.Event()
        self._result_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- the caller's side ---

    def feed(self, envelope: Envelope) -> None:
        """Queue one envelope (prepared now: one that cannot be sent gets its error)."""
        index = self._fed
        self._fed += 1
        if self._done or self._closed:
            self._put(index, not_sent())
            return
        try:
            self._queue.append(prepare_one(index, envelope, self.extensions))
        except TransportError as exc:
            self._put(index, exc)
        self._fed_event.set()

    def close(self) -> None:
        """Nothing more will be fed: the stream ends once every reply is read."""
        self._closed = True
        self._fed_event.set()
        self._result_event.set()

    def start(self) -> None:
        """Run the stream in a task of its own (:meth:`run` inline otherwise)."""
        self._task = asyncio.create_task(self.run(), name="smtp submit stream")

    async def wait(self) -> None:
        """Wait for the task started by :meth:`start` (cancelled when this is)."""
        if self._task is not None:
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                self._task.cancel()
                raise

    @property
    def written_ahead(self) -> int:
        """Envelopes fed whose outcome was not taken yet."""
        return self._fed - self._taken

    async def next(self) -> Outcome | None:
        """The next envelope's outcome, in feed order; None once closed and all taken (a
        stream whose link is gone answers "not sent" to what is fed until it is closed)."""
        while True:
            index = self._taken
            if index in self._results:
                self._taken += 1
                return self._results.pop(index)
            if index >= self._fed and self._closed:
                return None
            if self._done and index < self._fed:
                self._results[index] = not_sent()  # never reached the socket
                continue
            self._result_event.clear()
            await self._result_event.wait()

    def _put(self, index: int, outcome: Outcome) -> None:
        self._results[index] = outcome
        self._result_event.set()

    # --- the connection's side ---

    async def run(self) -> None:
        """Write and read until closed and drained, or the link is gone."""
        try:
            if self._gate is not None and await self._wait_fed():
                await self._gate()
            pipelining = "PIPELINING" in self.extensions
            while self.io.usable and await self._wait_fed():
                # One inactivity timer per stretch of work: idle waits for the feed are not
                # a silent server.
                with self.io.watched():
                    if pipelining and "CHUNKING" in self.extensions:
                        await self._chunked()
                    elif pipelining:
                        await self._pipelined()
                    else:
                        await self._lockstep()
        finally:
            self._done = True
            while self._queue:
                self._put(self._queue.popleft().index, not_sent())
            self._result_event.set()

    async def _wait_fed(self) -> bool:
        """Wait for an envelope; False once closed with none left."""
        while not self._queue:
            if self._closed:
                return False
            self._fed_event.clear()
            await self._fed_event.wait()
        return True

    def _send_mail(self, data: bytes, step: str = "mail_from") -> None:
        self.io.send(data, step)
        if self.mail_sent_at is None:
            # Taken after the write: a thread switch before it cannot make it look earlier.
            self.mail_sent_at = time.monotonic()

    # --- lock-step ---

    async def _lockstep(self) -> None:
        while self._queue and self.io.usable:
            msg = self._queue.popleft()
            try:
                self._put(msg.index, await self._transaction(msg))
            except TransportError as exc:
                self._put(msg.index, exc)

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
        if not msg.bdat:
            data = await io.command(b"DATA\r\n", "data")
            if data.code != SmtpCode.START_MAIL_INPUT:
                await self._rset_quietly()
                return SubmitResult(accepted, rejected, (data.code, data.text), delivered=False)
        try:  # the dot-stuffed body after 354, or BDAT <size> LAST with the exact bytes
            await io.write(msg.body, "data")
            final = await io.read("data")
        except TransportError as exc:
            raise unknown(exc) from None
        # A refused chunk may leave the transaction open: the next one starts with RSET.
        self.in_transaction = msg.bdat and not final.ok
        return SubmitResult(accepted, rejected, (final.code, final.text), delivered=final.ok)

    async def _rset_quietly(self) -> None:
        if self.io.usable:
            await self.io.command(b"RSET\r\n", "rset")
            self.in_transaction = False

    # --- the replies before the data (one reader for DATA and BDAT) ---

    async def _read_envelope(self, msg: Prepared, rset_sent: bool) -> _Replies:
        """Read the replies to [RSET] MAIL RCPT...; a 421 raises."""
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
        return _Replies(mail, accepted, rejected)

    async def _read_or_raise(self, step: str, *, recipient: str | None = None) -> Reply:
        """One reply; a 421 (the server is closing) raises as the refusal it is."""
        reply = await self.io.read(step)
        if self.io.broken:
            raise reply_error(step, reply, recipient=recipient)
        return reply

    def _refused_early(self, msg: Prepared, got: _Replies) -> bool:
        """Record a message refused before its data (MAIL, or every RCPT); True if so."""
        if not got.mail.ok:
            self._put(msg.index, reply_error("mail_from", got.mail))
        elif not got.accepted:
            self._put(msg.index, SubmitResult([], got.rejected, None, delivered=False))
        else:
            return False
        return True

    # --- pipelined with CHUNKING ---

    async def _chunked(self) -> None:
        """Each message's [RSET] MAIL RCPT... BDAT in one write, up to ``window`` messages
        ahead of their replies. Every message but the first of a connection starts with
        RSET, so that one refused (no open transaction, or one left open) cannot affect the
        next."""
        flight: deque[tuple[Prepared, bool]] = deque()  # written, replies not read yet
        while True:
            while self._queue and len(flight) < self.window and not self.io.broken:
                msg = self._queue.popleft()
                rset = self.in_transaction or self.mail_sent_at is not None
                if not self._write_chunked(msg, rset, flight):
                    return
                flight.append((msg, rset))
            if not flight:
                return  # all read (or 421: the server is closing; the rest not sent)
            msg, rset_sent = flight.popleft()
            try:
                await self.io.drain("data")
                got = await self._read_envelope(msg, rset_sent)
                final = await self.io.read("data")
            except TransportError as exc:
                if self.io.broken and exc.code is not None:  # 421: nothing after it is read
                    self._put(msg.index, exc)
                    self._lost([m for m, _ in flight], None)
                else:
                    self._lost([msg, *(m for m, _ in flight)], exc)
                return
            if not self._refused_early(msg, got):
                self._put(msg.index, SubmitResult(
                    got.accepted, got.rejected, (final.code, final.text), delivered=final.ok
                ))  # fmt: skip
            self.in_transaction = not (got.mail.ok and got.accepted and final.ok)
            if self.io.broken:
                self._lost([m for m, _ in flight], None)
                return

    def _write_chunked(
        self, msg: Prepared, rset: bool, flight: deque[tuple[Prepared, bool]]
    ) -> bool:
        lines = [b"RSET\r\n"] if rset else []
        lines += [msg.mail_line, *(line for _, line in msg.rcpts), msg.body]
        try:
            self._send_mail(b"".join(lines), "data" if self.mail_sent_at else "mail_from")
        except TransportError as exc:
            self._put(msg.index, exc if not flight else not_sent())
            self._lost([m for m, _ in flight], exc)
            return False
        return True

    def _lost(self, written: list[Prepared], exc: TransportError | None) -> None:
        """The link broke after ``written`` went out: each may have been accepted
        (``unknown``). ``exc`` None: the server said it is closing (421), so it took none."""
        for msg in written:
            if msg.index not in self._results:
                self._put(msg.index, unknown(exc) if exc is not None else not_sent())

    # --- pipelined ---

    async def _pipelined(self) -> None:
        pending: _InFlight | None = None
        need_rset = self.in_transaction
        while (self._queue or pending is not None) and not self.io.broken:
            current = self._queue.popleft() if self._queue else None
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
                    self._put(current.index, not_sent())  # 421 after the data: closing
                    return
            if current is None:
                continue
            try:
                pending, need_rset = await self._read_data_replies(current, rset_sent)
            except TransportError as exc:
                self._put(current.index, exc)
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
            self._send_mail(b"".join(chunks), "data" if pending else "mail_from")
        except TransportError as exc:
            self._lost_round(exc, pending, current)
            return False
        return True

    async def _drain_round(self, pending: _InFlight | None, current: Prepared | None) -> bool:
        try:
            await self.io.drain("data" if pending else "mail_from")
        except TransportError as exc:
            self._lost_round(exc, pending, current)
            return False
        return True

    def _lost_round(
        self, exc: TransportError, pending: _InFlight | None, current: Prepared | None
    ) -> None:
        if pending is not None and not pending.discard:
            self._put(pending.msg.index, unknown(exc))
        if current is not None:
            self._put(current.index, exc if pending is None else not_sent())

    async def _finish(self, pending: _InFlight) -> bool:
        """Read the reply after a message's data; False when the link broke."""
        try:
            final = await self.io.read("data")
        except TransportError as exc:
            if not pending.discard:
                self._put(pending.msg.index, unknown(exc))
            return False
        if not pending.discard:
            self._put(pending.msg.index, SubmitResult(
                pending.accepted, pending.rejected, (final.code, final.text), delivered=final.ok
            ))  # fmt: skip
        return True

    async def _read_data_replies(
        self, msg: Prepared, rset_sent: bool
    ) -> tuple[_InFlight | None, bool]:
        """Read the replies to [RSET] MAIL RCPT... DATA; return (in-flight, need_rset)."""
        got = await self._read_envelope(msg, rset_sent)
        data = await self._read_or_raise("data")
        went_354 = data.code == SmtpCode.START_MAIL_INPUT
        if self._refused_early(msg, got):
            discard = _InFlight(msg, [], {}, discard=True) if went_354 else None
            return discard, bool(got.mail.ok)
        if not went_354:
            self._put(msg.index, SubmitResult(
                got.accepted, got.rejected, (data.code, data.text), delivered=False
            ))  # fmt: skip
            return None, True
        return _InFlight(msg, got.accepted, got.rejected), False


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
