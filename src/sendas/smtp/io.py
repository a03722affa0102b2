"""One SMTP connection's byte stream: writes, replies read within the timeout, and the
inactivity watchdog that replaces per-reply timers during a burst of submissions.

Every failure becomes a :class:`TransportError` naming the step; a broken link or a 421
marks the stream unusable (:attr:`SmtpIO.usable`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sendas.errors import (
    AuthError,
    MailConnectionError,
    MailTimeoutError,
    ReplyError,
    TransportError,
)
from sendas.smtp.hints import hint_for
from sendas.smtp.replies import ReplyKind, SmtpCode
from sendas.smtp.wire import (
    MalformedReply,
    Reply,
    check_line,
    is_last_line,
    one_line_reply,
    parse_reply,
)

Mark = Callable[[str, str], None]
"""``mark(step, detail)``: a step succeeded (the session times it and tells its observer)."""

CRLF = b"\r\n"
_WRITE_HIGH_WATER = 256 * 1024
QUIT_TIMEOUT = 2.0


NOT_SMTP_HINT = (
    "Something answers on this port, but not an SMTP server: check the host, the port "
    "(465 implicit TLS, 587 STARTTLS) and the TLS mode."
)


def not_smtp() -> MailConnectionError:
    """The greeting is not SMTP. What was said is not repeated: Test Connection must not
    read out the banner of whatever service listens on a port."""
    return MailConnectionError(
        "the server does not speak SMTP", step="greeting", hint=NOT_SMTP_HINT
    )


class SmtpIO:
    """Reads and writes of one connection, each bounded by ``timeout`` seconds."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.broken = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_io = 0.0

    @property
    def usable(self) -> bool:
        return not self.broken and not self.writer.is_closing()

    # --- writes ---------------------------------------------------------------------------

    def send(self, data: bytes, step: str) -> None:
        """Hand ``data`` to the socket without waiting (see :meth:`drain`)."""
        if self.writer.is_closing():
            self.broken = True
            raise MailConnectionError("the connection is closed", step=step, hint=closed_hint(step))
        try:
            self.writer.write(data)
        except OSError as exc:
            raise self._broke(exc, step) from None
        if self._watchdog is not None:
            self._last_io = time.monotonic()

    async def drain(self, step: str) -> None:
        """Wait for the socket only when much is buffered (the server stopped reading)."""
        if self.writer.transport.get_write_buffer_size() <= _WRITE_HIGH_WATER:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except TimeoutError:
            self.broken = True
            raise MailTimeoutError(
                f"the server stopped reading for {self.timeout:g} s", step=step
            ) from None
        except OSError as exc:
            raise self._broke(exc, step) from None

    async def write(self, data: bytes, step: str) -> None:
        self.send(data, step)
        await self.drain(step)

    def _broke(self, exc: OSError, step: str) -> MailConnectionError:
        self.broken = True
        return MailConnectionError(
            f"the connection broke: {exc}", step=step, hint=closed_hint(step)
        )

    # --- reads ----------------------------------------------------------------------------

    async def command(self, line: bytes, step: str) -> Reply:
        await self.write(line, step)
        return await self.read(step)

    async def raw_reply(self) -> Reply:
        line = await self.reader.readuntil(b"\n")
        if line[3:4] == b" ":  # the usual one-line reply (parse_reply checks its code)
            return one_line_reply(line)
        lines = [check_line(line)]
        while not is_last_line(lines[-1]):
            lines.append(check_line(await self.reader.readuntil(b"\n")))
        return parse_reply(lines)

    async def read(self, step: str) -> Reply:
        """Read one reply within the timeout. A 421 marks the stream unusable."""
        try:
            if self._watchdog is None:
                async with asyncio.timeout(self.timeout):
                    reply = await self.raw_reply()
            else:
                reply = await self.raw_reply()
                self._last_io = time.monotonic()
        except TimeoutError as exc:
            self.broken = True
            raise MailTimeoutError(
                f"no reply from the server within {self.timeout:g} s",
                step=step,
                hint=hint_for(step, None, exc=exc),
            ) from None
        except (asyncio.IncompleteReadError, OSError) as exc:
            self.broken = True
            raise MailConnectionError(
                "the server closed the connection", step=step, hint=closed_hint(step, exc)
            ) from None
        except (MalformedReply, asyncio.LimitOverrunError, ValueError):
            self.broken = True
            if step == "greeting":
                raise not_smtp() from None
            raise MailConnectionError(
                "the server's answer is not SMTP", step=step, hint=closed_hint(step)
            ) from None
        if reply.code == SmtpCode.SERVICE_UNAVAILABLE:
            self.broken = True
        return reply

    # --- the watchdog ---------------------------------------------------------------------

    @contextmanager
    def watched(self) -> Iterator[None]:
        """One inactivity timer for a burst of submissions instead of a timer per reply:
        ``asyncio.timeout`` per reply costs about a quarter of the client's CPU time."""
        loop = asyncio.get_running_loop()
        self._last_io = time.monotonic()
        self._watchdog = loop.call_at(self._last_io + self.timeout, self._bark)
        try:
            yield
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None

    def _bark(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._last_io + self.timeout
        if loop.time() < due:
            self._watchdog = loop.call_at(due, self._bark)
        else:
            self._watchdog = None
            self.reader.set_exception(TimeoutError())  # the pending read raises it

    # --- closing --------------------------------------------------------------------------

    async def close(self, *, say_quit: bool) -> None:
        """Optionally say QUIT (best effort, short timeout), then close the socket."""
        writer = self.writer
        limit = min(self.timeout, QUIT_TIMEOUT)
        if say_quit and self.usable:
            self.broken = True
            try:
                async with asyncio.timeout(limit):
                    writer.write(b"QUIT\r\n")
                    await writer.drain()
                    await self.raw_reply()
            except (OSError, TimeoutError, EOFError, MalformedReply, asyncio.LimitOverrunError):
                pass
        self.broken = True
        writer.close()
        try:
            async with asyncio.timeout(limit):
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            pass

    def abort(self) -> None:
        self.broken = True
        self.writer.transport.abort()


def reply_error(step: str, reply: Reply, *, recipient: str | None = None) -> TransportError:
    """The error for a refusal: :class:`AuthError` for a refused sign-in, else
    :class:`ReplyError` with the reply's kind, code and hint."""
    kind = reply.kind
    hint = hint_for(step, reply.code, reply.text)
    message = f"{step.replace('_', ' ')} refused: {reply}"
    if kind is ReplyKind.AUTH and step == "auth":
        return AuthError(message, step=step, code=reply.code, server_reply=str(reply), hint=hint)
    return ReplyError(
        message,
        kind=kind,
        step=step,
        code=reply.code,
        server_reply=str(reply),
        hint=hint,
        recipient=recipient,
    )


def closed_hint(step: str, exc: BaseException | None = None) -> str:
    return hint_for(step, None, exc=exc if exc is not None else ConnectionResetError())
