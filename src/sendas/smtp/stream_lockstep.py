"""A :class:`~sendas.smtp.stream.SubmitStream` to a server without PIPELINING: one
command, one reply, a message at a time ([RSET] MAIL, each RCPT, DATA and the body, or
``BDAT <size> LAST`` with CHUNKING).

A mixin of the stream (its methods, called directly), apart so that the mode reads on its
own."""

from __future__ import annotations

from sendas.errors import TransportError
from sendas.smtp.io import reply_error
from sendas.smtp.replies import SmtpCode
from sendas.smtp.stream_base import StreamBase, unknown
from sendas.smtp.submit import Prepared, Rejected, SubmitResult


class LockStep(StreamBase):
    """Lock-step submission: each command waits for its reply."""

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
