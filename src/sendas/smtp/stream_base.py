"""What the three ways of writing a :class:`~sendas.smtp.stream.SubmitStream` share: the
stream's state, recording an outcome, the first MAIL FROM's time, the replies before the
data, and the errors of messages the link's loss leaves unknown or not sent.

The base of the modes' mixins (:mod:`~sendas.smtp.stream_lockstep`,
:mod:`~sendas.smtp.stream_pipelined`, :mod:`~sendas.smtp.stream_chunked`): split from
:mod:`~sendas.smtp.stream` so that each mode reads on its own, with no layer in between (a
stream is still one object, its methods called directly).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from sendas.errors import DeliveryUnknown, MailConnectionError, TransportError
from sendas.smtp.io import SmtpIO, reply_error
from sendas.smtp.submit import Outcome, Prepared, Rejected, StartGate, SubmitResult
from sendas.smtp.wire import Reply

CHUNK_WINDOW = 8
"""Messages written ahead of their replies with PIPELINING and CHUNKING: a slow link carries
several at once. A connection lost leaves at most this many ``unknown``."""


@dataclass(slots=True)
class Replies:
    """The replies to a message's [RSET] MAIL RCPT...: what DATA or BDAT reply comes after."""

    mail: Reply
    accepted: list[str]
    rejected: Rejected


class StreamBase:
    """The state of a submit stream and the steps its modes share."""

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

    def _put(self, index: int, outcome: Outcome) -> None:
        self._results[index] = outcome
        self._result_event.set()

    def _send_mail(self, data: bytes, step: str = "mail_from") -> None:
        self.io.send(data, step)
        if self.mail_sent_at is None:
            # Taken after the write: a thread switch before it cannot make it look earlier.
            self.mail_sent_at = time.monotonic()

    # --- the replies before the data (one reader for DATA and BDAT) ---

    async def _read_envelope(self, msg: Prepared, rset_sent: bool) -> Replies:
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
        return Replies(mail, accepted, rejected)

    async def _read_or_raise(self, step: str, *, recipient: str | None = None) -> Reply:
        """One reply; a 421 (the server is closing) raises as the refusal it is."""
        reply = await self.io.read(step)
        if self.io.broken:
            raise reply_error(step, reply, recipient=recipient)
        return reply

    def _refused_early(self, msg: Prepared, got: Replies) -> bool:
        """Record a message refused before its data (MAIL, or every RCPT); True if so."""
        if not got.mail.ok:
            self._put(msg.index, reply_error("mail_from", got.mail))
        elif not got.accepted:
            self._put(msg.index, SubmitResult([], got.rejected, None, delivered=False))
        else:
            return False
        return True


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
