"""A :class:`~sendas.smtp.stream.SubmitStream` to a server with PIPELINING and CHUNKING
(RFC 3030): each message's [RSET] MAIL RCPT... ``BDAT <size> LAST`` (the exact bytes, no
dot-stuffing) in one write, up to ``window`` messages written ahead of their replies.

A mixin of the stream (its methods, called directly), apart so that the mode reads on its
own."""

from __future__ import annotations

from collections import deque

from sendas.errors import TransportError
from sendas.smtp.stream_base import StreamBase, not_sent, unknown
from sendas.smtp.submit import Prepared, SubmitResult


class Chunked(StreamBase):
    """Pipelined submission with BDAT: a window of messages in flight."""

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
