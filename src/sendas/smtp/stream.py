"""Submitting messages over an open connection: envelopes fed one at a time, outcomes
taken in order as the replies arrive. Lock-step (one command, one reply) without
PIPELINING; with it (RFC 2920) a message's commands in one write, the next message's
commands right after its predecessor's data, one round trip per message.

When the server offers CHUNKING (RFC 3030) the data goes as ``BDAT <size> LAST`` with the
exact bytes (no dot-stuffing); with PIPELINING too, a message's MAIL, RCPTs and BDAT go in
one write, and several messages are written ahead of their replies (the window).

The stream's three ways of writing are mixins, each in a module of its own:
:mod:`~sendas.smtp.stream_lockstep`, :mod:`~sendas.smtp.stream_pipelined` and
:mod:`~sendas.smtp.stream_chunked`, on :mod:`~sendas.smtp.stream_base` (the state and the
steps they share). This module holds the caller's side (feed, next, close) and the loop
that picks the mode; a stream is one object, so no call or await is added per message.
"""

from __future__ import annotations

import asyncio

from sendas.errors import TransportError
from sendas.smtp.stream_base import CHUNK_WINDOW, not_sent, unknown
from sendas.smtp.stream_chunked import Chunked
from sendas.smtp.stream_lockstep import LockStep
from sendas.smtp.stream_pipelined import Pipelined
from sendas.smtp.submit import Envelope, Outcome, prepare_one

__all__ = ["CHUNK_WINDOW", "SubmitStream", "not_sent", "unknown"]


class SubmitStream(LockStep, Pipelined, Chunked):
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

    Made with ``(io, extensions, *, in_transaction, window=CHUNK_WINDOW, start_gate=None)``
    (:class:`~sendas.smtp.stream_base.StreamBase`, which holds the state).
    """

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
