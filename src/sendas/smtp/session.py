"""An SMTP client session for one :class:`SmtpEndpoint`: connect, TLS, EHLO, AUTH, then any
number of submissions over the same connection, pipelined (RFC 2920) when offered.

Hand-written on asyncio streams rather than aiosmtplib: aiosmtplib has no PIPELINING and
waits one round trip per command, which the outbox's throughput target rules out. The work
is done by :mod:`~sendas.smtp.connect`, :mod:`~sendas.smtp.auth`, :mod:`~sendas.smtp.submit`,
:mod:`~sendas.smtp.stream` and :mod:`~sendas.smtp.io`; this class holds the state.

Errors are the classes of :mod:`sendas.errors`, each with ``step``, ``code``,
``server_reply`` and ``hint``. No secret (password, token, AUTH payload) ever reaches an
exception, a log line or a repr.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from sendas.errors import MailConnectionError, TransportError
from sendas.smtp import submit
from sendas.smtp.auth import authenticate
from sendas.smtp.connect import establish
from sendas.smtp.endpoint import EffectiveTls, SmtpEndpoint
from sendas.smtp.io import QUIT_TIMEOUT, SmtpIO, closed_hint, reply_error
from sendas.smtp.stream import CHUNK_WINDOW, SubmitStream
from sendas.smtp.submit import Envelope, Outcome, StartGate, SubmitResult
from sendas.smtp.wire import Reply, needs_smtputf8

StepObserver = Callable[[str, float, str], None]
"""Called after each step that succeeded: ``(step, milliseconds, detail)``."""


class SmtpSession:
    """An open, authenticated SMTP connection; reusable for many submissions.

    ``async with SmtpSession(endpoint) as s`` connects, does TLS, EHLO and AUTH, and says
    QUIT on exit. After a connection error or a 421 the session is no longer usable
    (:attr:`usable`); open a new one.
    """

    def __init__(self, endpoint: SmtpEndpoint, *, on_step: StepObserver | None = None) -> None:
        self.endpoint = endpoint
        self.extensions: dict[str, str] = {}
        self.tls_active = False
        self.tls_found: EffectiveTls | None = None  # the encryption the connection used
        self._on_step = on_step
        self._io: SmtpIO | None = None
        self._in_transaction = False
        self._step_started = 0.0
        self.mail_sent_at: float | None = None
        """``time.monotonic()`` just after the first MAIL FROM of the latest
        :meth:`submit_many` was handed to the socket (None: it never was). Taken after the
        write, so that a thread switch before it cannot make the moment look earlier."""

    def __repr__(self) -> str:
        state = "open" if self.usable else "closed"
        ep = self.endpoint
        return f"<SmtpSession {ep.host}:{ep.port} tls={ep.effective_tls} {state}>"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def usable(self) -> bool:
        return self._io is not None and self._io.usable

    @property
    def supports_pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    # --- opening ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, TLS, EHLO, AUTH. Raises a :class:`TransportError` naming the step."""
        self._step_started = asyncio.get_running_loop().time()
        conn = await establish(self.endpoint, self._mark)
        self._io, self.extensions, self.tls_active = conn.io, conn.extensions, conn.tls_active
        self.tls_found = conn.tls_found
        if not self.endpoint.has_credentials:
            return
        try:
            await authenticate(conn.io, self.endpoint, self.extensions, self.tls_active, self._mark)
        except BaseException:
            self.abort()
            raise

    # --- single commands (Test Connection) ----------------------------------------------

    async def mail_from(self, address: str) -> Reply:
        """``MAIL FROM`` alone (Test Connection). Raises ReplyError on refusal."""
        line = submit.mail_line(address, needs_smtputf8(address), b"", self.extensions)
        reply = await self._command(line, "mail_from")
        if not reply.ok:
            raise reply_error("mail_from", reply)
        self._in_transaction = True
        self._mark("mail_from", str(reply))
        return reply

    async def rcpt_to(self, address: str) -> Reply:
        """``RCPT TO`` alone (Test Connection). Raises ReplyError on refusal."""
        line = submit.rcpt_line(address, needs_smtputf8(address), self.extensions)
        reply = await self._command(line, "rcpt_to")
        if not reply.ok:
            raise reply_error("rcpt_to", reply, recipient=address)
        self._mark("rcpt_to", str(reply))
        return reply

    async def rset(self) -> Reply:
        reply = await self._command(b"RSET\r\n", "rset")
        self._in_transaction = False
        self._mark("rset", str(reply))
        return reply

    async def noop(self) -> Reply:
        """A cheap round trip: checks that a reused connection is still alive."""
        return await self._command(b"NOOP\r\n", "noop")

    # --- submissions --------------------------------------------------------------------

    async def submit(
        self, envelope_from: str, recipients: Sequence[str], data: bytes
    ) -> SubmitResult:
        """Submit one message. Returns a :class:`SubmitResult` (also when the server refused
        recipients or the data); raises a :class:`TransportError` when MAIL FROM was refused,
        nothing could be sent, or :class:`DeliveryUnknown` when the link broke after the
        data went out."""
        (result,) = await self.submit_many([Envelope(envelope_from, list(recipients), data)])
        if isinstance(result, TransportError):
            raise result
        return result

    async def submit_many(
        self, batch: Sequence[Envelope], *, start_gate: StartGate | None = None
    ) -> list[Outcome]:
        """Submit several messages over this connection, one outcome per envelope, in order.

        With PIPELINING the commands of each message go out in one write, and the next
        message's commands follow its predecessor's data: one round trip per message.
        A connection error ends the batch: the message in flight becomes
        :class:`DeliveryUnknown`, later ones a :class:`MailConnectionError` (not sent).

        ``start_gate`` is awaited after the commands are prepared and right before the
        first write (pacing); :attr:`mail_sent_at` then says when MAIL FROM went out.
        """
        run = self.stream(start_gate=start_gate)
        for envelope in batch:
            run.feed(envelope)
        run.close()
        try:
            await run.run()
        finally:
            self.end_stream(run)
        results: list[Outcome] = []
        while (outcome := await run.next()) is not None:
            results.append(outcome)
        return results

    def stream(
        self, *, window: int = CHUNK_WINDOW, start_gate: StartGate | None = None
    ) -> SubmitStream:
        """A :class:`SubmitStream` over this connection: feed envelopes, take outcomes in
        order as the replies arrive. Run it (``start()`` or ``await run()``), then hand it
        to :meth:`end_stream`; one stream at a time."""
        io = self._io
        if io is None or not io.usable:
            raise MailConnectionError("the SMTP session is not open", step="mail_from")
        self.mail_sent_at = None
        return SubmitStream(
            io, self.extensions, in_transaction=self._in_transaction, window=window,
            start_gate=start_gate,
        )  # fmt: skip

    def end_stream(self, run: SubmitStream) -> None:
        """Take over what a finished stream knows of the connection."""
        self._in_transaction = run.in_transaction
        self.mail_sent_at = run.mail_sent_at

    # --- closing ------------------------------------------------------------------------

    async def quit(self) -> None:
        """Say QUIT (best effort, short timeout) and close the connection."""
        if self._io is not None and self.usable:
            try:
                async with asyncio.timeout(min(self.endpoint.timeout, QUIT_TIMEOUT)):
                    reply = await self._io.command(b"QUIT\r\n", "quit")
                self._mark("quit", str(reply))
            except (TransportError, TimeoutError):
                pass
            self._io.broken = True
        await self.close()

    async def close(self) -> None:
        """QUIT if the session is healthy, then close the socket."""
        io, self._io = self._io, None
        if io is not None:
            await io.close(say_quit=True)

    def abort(self) -> None:
        """Close the socket at once, no QUIT: for a session whose command was cut off."""
        io, self._io = self._io, None
        if io is not None:
            io.abort()

    # --- helpers ------------------------------------------------------------------------

    def _mark(self, step: str, detail: str) -> None:
        now = asyncio.get_running_loop().time()
        if self._on_step is not None:
            self._on_step(step, (now - self._step_started) * 1000.0, detail)
        self._step_started = now

    async def _command(self, line: bytes, step: str) -> Reply:
        if self._io is None:
            raise MailConnectionError("the connection is closed", step=step, hint=closed_hint(step))
        return await self._io.command(line, step)
