"""A lane without delay sends through a sliding window over one connection: the link never
idles between batches, and a crash leaves only what may have reached the server ``unknown``.

Three tasks share the window. The feeder marks claimed messages ``sending`` in small
chunks just ahead of the wire (at most ``send_window`` marked and not yet recorded) and
feeds them to the connection's :class:`~sendas.smtp.SubmitStream`; the next claim is
claimed and rendered meanwhile. The reader takes the outcomes in order as the replies
arrive. The recorder stores them in group commits (``group_commit_ms``) while the wire goes
on. Claimed messages not yet marked stay ``queued`` under their lease: a worker killed now
leaves them to come back, and at most the window ``unknown``.

A commit costs about a millisecond of CPU whatever it holds (SQLite), more than recording or
marking a message: so while the feeder waits for room, the recorder leaves the outcomes to
it, and the feeder records them in the commit that marks its next chunk (the window's bound
holds at that commit: what it records makes the room for what it marks).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from sendas.outbox.claims import Claim, ClaimedMessage, Rendered
from sendas.outbox.marking import release_messages
from sendas.outbox.stops import LaneStop
from sendas.smtp import Envelope, Outcome, SmtpSession

if TYPE_CHECKING:
    from sendas.outbox.driver import LaneDriver

log = logging.getLogger("sendas.outbox")

NOTE_EVERY = 20
"""Outcomes per measure of the link's speed (which sizes the claims)."""
AHEAD_SECONDS = 0.25
"""Without CHUNKING a connection carries one message per round trip: a lane's first
connection holds marked only what the link takes in this long (enough to cover a commit
marking the next chunk), at least ``MIN_AHEAD``. Marked beyond that only waits in the
queue, and a worker killed then leaves all of it ``unknown``: a full window at 20 ms, of
which one message was on the wire."""
MIN_AHEAD = 4

Item = tuple[Claim, ClaimedMessage, Outcome]


class Window:
    """One stretch of pipelined sending by one connection of a lane."""

    def __init__(self, driver: LaneDriver, session: SmtpSession) -> None:
        self.d = driver
        self.cfg = driver.ctx.cfg
        self.session = session
        self.stream = session.stream(window=self.cfg.send_window)
        self.flight: deque[tuple[Claim, ClaimedMessage]] = deque()  # fed, outcome not taken
        self.outstanding = 0  # marked sending (or being marked), not yet recorded
        self.room = asyncio.Event()
        self.pending: list[Item] = []  # outcomes taken, not yet recorded
        self.recordings: set[asyncio.Future[None]] = set()  # the feeder's, in progress
        self.got = asyncio.Event()
        self.need = 0  # the feeder waits for room for this many (0: it does not wait)
        self.limit = self.cfg.send_window  # marked and not recorded, at most (see _ahead)
        self.feeding = False  # the feeder is within a claim: it comes back for room soon
        self.reading_done = False
        self.stop = False  # feed nothing more (the lane must stop, or the link is gone)
        self.failure: BaseException | None = None
        self.claimed: list[int] = []

    async def run(
        self, claim: Claim, rendered: dict[int, Rendered | str], accept: Callable[[Claim], bool]
    ) -> None:
        """Send ``claim`` and the lane's next claims while ``accept`` says so; record every
        outcome; give back what was claimed and never marked. Raises :class:`LaneStop`
        when an outcome says the lane must stop (after recording the rest)."""
        self.stream.start()
        reader = asyncio.create_task(self._read())
        recorder = asyncio.create_task(self._record_loop())
        try:
            await self._feed(claim, rendered, accept)
        except BaseException as exc:
            self.failure = self.failure or exc
        finally:
            self.stream.close()
            await asyncio.gather(self.stream.wait(), reader, return_exceptions=True)
            await asyncio.gather(recorder, *self.recordings, return_exceptions=True)
            self.session.end_stream(self.stream)
            await self.d.give_back(self.claimed)
        if self.failure is not None:
            raise self.failure

    # --- feeding ---

    def _halted(self) -> bool:
        d = self.d
        return (
            self.stop
            or d.ctx.stopping.is_set()
            or d.lane_over.is_set()
            or not self.session.usable
            or d.st.session is not self.session
        )

    async def _feed(
        self, claim: Claim, rendered: dict[int, Rendered | str], accept: Callable[[Claim], bool]
    ) -> None:
        d = self.d
        current: Claim | None = claim
        while current is not None:
            ids = [m.id for m in current.messages]
            self.claimed.extend(ids)
            d.ctx.held.update(ids)
            if current.messages and (
                self._halted() or not accept(current) or current.endpoint != d.st.endpoint
            ):
                return  # given back by run
            if not d.ctx.stopping.is_set():
                # The next claim is claimed and rendered while this one is on the wire.
                d.st.prefetch = asyncio.create_task(d.claim_ahead())
            await self._feed_claim(current, rendered)
            if self._halted():
                return
            current, rendered = await d.next_claim()

    def _ahead(self) -> int:
        """Messages held marked and not yet recorded, at most: the window, or on a link
        taking one message per round trip what it takes in ``AHEAD_SECONDS`` (once its
        speed is known: the first claims go as before). A pool's extra connection keeps the
        window: when the lane ends it gives back what it claimed and did not mark, and the
        lane would have to be taken (and connected) again for those."""
        window, each = self.cfg.send_window, self.d.st.per_message
        if each is None or self.d.pool is not None or "CHUNKING" in self.session.extensions:
            return window
        return min(window, max(MIN_AHEAD, math.ceil(AHEAD_SECONDS / max(each, 1e-6))))

    async def _feed_claim(self, claim: Claim, rendered: dict[int, Rendered | str]) -> None:
        self.feeding = True
        try:
            await self._feed_parts(claim, rendered)
        finally:
            self.feeding = False
            self.got.set()  # the recorder looks again: the outcomes are its own now

    async def _feed_parts(self, claim: Claim, rendered: dict[int, Rendered | str]) -> None:
        messages = claim.messages
        start = 0
        while start < len(messages):
            self.limit = self._ahead()
            # Half a window per commit: a smaller chunk means a commit per few messages, and
            # those commits, not the wire, then bound the speed (window 32 marked 8 at a time
            # ran at 0.6 of window 64 marked 32 at a time, loopback).
            part = messages[start : start + max(1, self.limit // 2)]
            start += len(part)
            await self._wait_room(len(part))
            if self._halted():
                return
            # The outcomes taken meanwhile go in the same commit (see the module's doc).
            items, self.pending = self.pending, []
            self.outstanding += len(part)
            marked: list[ClaimedMessage] = []
            try:
                marked = await self._record_and_mark(items, part, rendered)
            finally:
                self.outstanding -= len(part) - len(marked)
            if marked and self._halted():
                # Told to stop (a pause, a refusal, the link gone) while they were being
                # marked: none of them was written, so they go back to the queue.
                await self._unmark(marked)
                return
            for m in marked:
                self.flight.append((claim, m))
                self.stream.feed(Envelope(m.envelope_from, m.recipients, m.raw, m.crlf))

    async def _wait_room(self, size: int) -> None:
        """Until ``size`` more fit in the window once the outcomes taken are recorded."""
        self.need = size
        try:
            while not self._fits_after_recording() and not self._halted():
                self.room.clear()
                await self.room.wait()
        finally:
            self.need = 0

    async def _record_and_mark(
        self, items: list[Item], part: list[ClaimedMessage], rendered: dict[int, Rendered | str]
    ) -> list[ClaimedMessage]:
        """Record ``items`` and mark ``part`` sending: both requests reach the database
        queue in the same turn of the loop, so they share a commit."""
        if not items:
            return await self.d.mark_sending(part, rendered=rendered)
        recording = asyncio.ensure_future(self._record(items))
        self.recordings.add(recording)
        recording.add_done_callback(self.recordings.discard)
        marking = asyncio.ensure_future(self.d.mark_sending(part, rendered=rendered))
        try:
            await asyncio.wait([recording, marking])  # _record keeps its failures to itself
        except BaseException:
            # Cancelled (a stop past its grace time): the outcomes are still recorded (run
            # awaits them), or the accepted messages would end up unknown.
            marking.cancel()
            raise
        return marking.result()

    async def _unmark(self, marked: list[ClaimedMessage]) -> None:
        ids = [m.id for m in marked]
        d = self.d
        try:
            await d.ctx.tx.run(
                partial(release_messages, owner=d.ctx.owner, ids=ids, was_sending=True)
            )
        finally:
            d.ctx.held.difference_update(ids)
            self.outstanding -= len(ids)
            self.room.set()

    # --- reading and recording ---

    async def _read(self) -> None:
        count, since = 0, time.monotonic()
        try:
            while (outcome := await self.stream.next()) is not None:
                claim, message = self.flight.popleft()
                self.pending.append((claim, message, outcome))
                self.got.set()
                if self.need and self._fits_after_recording():
                    self.room.set()
                count += 1
                if count >= NOTE_EVERY:
                    now = time.monotonic()
                    self.d.st.note_batch(count, now - since)
                    count, since = 0, now
        finally:
            self.reading_done = True
            self.got.set()

    def _fits_after_recording(self) -> bool:
        return self.outstanding - len(self.pending) + self.need <= self.limit

    def _left_to_feeder(self) -> bool:
        """The feeder is within a claim and records the outcomes with its next mark."""
        return self.feeding and not self.reading_done and not self._halted()

    async def _record_loop(self) -> None:
        while True:
            if not self.pending or self._left_to_feeder():
                if self.reading_done and not self.pending:
                    return
                self.got.clear()
                await self.got.wait()
                continue
            if not self.reading_done and self.cfg.group_commit_ms > 0:
                # Replies arriving meanwhile join this commit; the wire goes on.
                await asyncio.sleep(self.cfg.group_commit_ms / 1000)
                if self._left_to_feeder():
                    continue
            items, self.pending = self.pending, []
            await self._record(items)

    async def _record(self, items: list[Item]) -> None:
        by_claim: dict[int, tuple[Claim, list[tuple[ClaimedMessage, Outcome]]]] = {}
        for claim, message, outcome in items:
            by_claim.setdefault(id(claim), (claim, []))[1].append((message, outcome))
        for claim, outcomes in by_claim.values():
            try:
                await self.d.record(claim, outcomes)
            except LaneStop as exc:
                self.failure, self.stop = self.failure or exc, True
            except Exception as exc:
                log.exception("lane %s: recording outcomes failed", self.d.st.name)
                self.failure, self.stop = self.failure or exc, True
            finally:
                self.outstanding -= len(outcomes)
                self.room.set()
