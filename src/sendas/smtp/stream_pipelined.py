"""A :class:`~sendas.smtp.stream.SubmitStream` to a server with PIPELINING (RFC 2920) but
not CHUNKING: a message's [RSET] MAIL RCPT... DATA in one write; its body waits for the 354
(a sync point) and goes in the same write as the next message's commands, one round trip
per message.

A mixin of the stream (its methods, called directly), apart so that the mode reads on its
own."""

from __future__ import annotations

from dataclasses import dataclass

from sendas.errors import TransportError
from sendas.smtp.replies import SmtpCode
from sendas.smtp.stream_base import StreamBase, not_sent, unknown
from sendas.smtp.submit import Prepared, Rejected, SubmitResult


@dataclass(slots=True)
class _InFlight:
    """A message whose DATA got 354: its body goes first in the next write."""

    msg: Prepared
    accepted: list[str]
    rejected: Rejected
    discard: bool = False  # the server said 354 although we have nothing to send


class Pipelined(StreamBase):
    """Pipelined submission with DATA: one message's body in flight with the next's
    commands."""

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
