"""Paced sending: one message at a time, each started at its slot and never sooner than
``delay_ms`` after the previous actual start of the lane (the delivery promise on pacing).

Slots are planned from the previous planned slot (no drift). The commit that marks a
message ``sending`` is made a little ahead of its slot (at most ``MAX_COMMIT_LEAD``), so
that its latency does not delay the start; on a delay up to ``MAX_COMMIT_LEAD`` it is made
as soon as the message before went out, beside the commit recording that one. Form letters
are rendered one slot ahead, several per job on a long delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from sendas.db.models import utcnow
from sendas.errors import TransportError
from sendas.outbox import pacing
from sendas.outbox.claims import Claim, ClaimedMessage, Rendered
from sendas.outbox.lanes import unreserve
from sendas.outbox.marking import release_messages
from sendas.smtp import Envelope, SubmitResult

if TYPE_CHECKING:
    from sendas.outbox.driver import LaneDriver

log = logging.getLogger("sendas.outbox")
starts_log = logging.getLogger("sendas.outbox.starts")
"""At INFO: one line per paced submission, ``<lane> <time.time()>`` of the moment its MAIL
FROM was handed to the socket (what pacing promises on; tests read it)."""

MIN_COMMIT_LEAD = 0.012
"""A paced message is marked ``sending`` (committed) this long at least before its slot,
so that the commit is over when the slot comes (a crash in between makes it ``unknown``):
a start missed by a slow commit (an fsync spike) could never be made up, since the next
gap may not be shorter."""
MAX_COMMIT_LEAD = 0.1
"""Never marked longer than this before the slot: what a crash may leave ``unknown``
unsent (on a 50 ms delay, two messages)."""

AHEAD_ITEM_MS = 25
"""Form letters rendered ahead go to the render processes in jobs of one per this many ms
of delay (at least one; fewer when the lane's letters render slowly, see ``job_size``):
each job is a round trip between the worker and a process, the cost that limits 500 lanes
at one message a second, while a job stays short beside the slot it must be ready for (a
form letter renders in a few ms)."""

Ahead = dict[int, "asyncio.Task[dict[int, Rendered | str]]"]
"""Form letters of a paced claim being rendered ahead of their slots, by message id (the
messages of one job share its task)."""


@dataclass
class _Run:
    """One paced claim in progress: the next message is marked sending by a task of its
    own, timed by its slot, while the one before waits for its slot or goes out; a clean
    outcome is recorded beside the next submissions rather than before them."""

    ahead: Ahead = field(default_factory=dict)
    marks: dict[int, asyncio.Task[ClaimedMessage | None]] = field(default_factory=dict)
    committing: set[int] = field(default_factory=set)  # marks past their sleep
    marked: dict[int, ClaimedMessage] = field(default_factory=dict)  # sending, not submitted
    records: list[asyncio.Task[None]] = field(default_factory=list)


def _render_ahead(driver: LaneDriver, ahead: Ahead, messages: list[ClaimedMessage]) -> None:
    """Start rendering the form letters among ``messages`` not started yet, in one job due
    at the first one's slot (the renderer serves the earliest slots of all lanes first).
    Started one slot ahead, so that the load is spread over time and the slot finds the
    message ready."""
    todo = [m for m in messages if m.render is not None and m.id not in ahead]
    if todo:
        task = asyncio.create_task(driver.render(todo))
        ahead.update((m.id, task) for m in todo)


async def send_paced(driver: LaneDriver, claim: Claim) -> None:
    run = _Run()
    waiting = [m.id for m in claim.messages]
    driver.ctx.waiting.update(waiting)
    try:
        await _send_paced(driver, claim, run)
    finally:
        await _wind_up(driver, run)
        driver.ctx.waiting.difference_update(waiting)


async def _wind_up(driver: LaneDriver, run: _Run) -> None:
    """The claim ends: marks not committing yet are dropped, the others awaited; what was
    marked and never submitted is queued again; every outcome is recorded."""
    for task in run.ahead.values():
        task.cancel()
    for message_id, mark in run.marks.items():
        if message_id not in run.committing:
            mark.cancel()
    await asyncio.gather(*run.ahead.values(), *run.marks.values(), return_exceptions=True)
    if run.marked:
        ids = list(run.marked)
        driver.ctx.held.difference_update(ids)
        await driver.ctx.tx.run(
            partial(release_messages, owner=driver.ctx.owner, ids=ids, was_sending=True)
        )
    for outcome in await asyncio.gather(*run.records, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.error("lane %s: recording an outcome failed: %r", driver.st.name, outcome)


def job_size(delay_ms: int, each: float | None) -> int:
    """Form letters per render job on a lane with ``delay_ms``: one per ``AHEAD_ITEM_MS``,
    and no more than render in half a delay at ``each`` seconds apiece (a job's first
    message waits for the whole job: a slow template must not make it miss its slot)."""
    job = max(1, delay_ms // AHEAD_ITEM_MS)
    if each is not None and each > 0:
        job = min(job, max(1, int(delay_ms / 1000 / 2 / each)))
    return job


async def _send_paced(driver: LaneDriver, claim: Claim, run: _Run) -> None:
    delay = claim.delay_ms / 1000
    following = [*claim.messages[1:], None]
    for i, (m, after) in enumerate(zip(claim.messages, following, strict=True)):
        if driver.ctx.stopping.is_set():
            return
        _render_ahead(driver, run.ahead, [m])  # the claim's first, alone: due at once
        if after is not None and after.id not in run.ahead:
            job = job_size(claim.delay_ms, driver.ctx.renderer.each(driver.st.name))
            _render_ahead(driver, run.ahead, claim.messages[i + 1 : i + 1 + job])
        mark = run.marks.get(m.id) or _start_mark(driver, run, m)
        session = await driver.ensure_session(claim.endpoint)
        ready = await mark
        run.marks.pop(m.id, None)
        if ready is None:
            # Paused, cancelled or taken meanwhile: the rest of this claim is likely the
            # same form letter. Give it back (see _drive) with its slots.
            await driver.ctx.tx.run(
                partial(unreserve, lane=driver.st.name, owner=driver.ctx.owner,
                        next_send_at=driver.st.next_floor)
            )  # fmt: skip
            return
        # On a short delay the next message is marked once this one is out (below).
        eager = delay <= MAX_COMMIT_LEAD
        if after is not None and not eager:
            _start_mark(driver, run, after)  # timed by its own slot
        # Slots are planned from the previous planned slot (no drift); the start waits
        # for the slot, and for delay_ms after the previous actual start.
        start = time.monotonic() + ((m.slot or utcnow()) - utcnow()).total_seconds()
        gate = pacing.start_gate(start, previous_start=driver.st.last_start_mono, delay=delay)
        envelope = Envelope(ready.envelope_from, ready.recipients, ready.raw, ready.crlf)
        run.marked.pop(ready.id, None)
        answer: SubmitResult | TransportError
        try:
            (answer,) = await session.submit_many([envelope], start_gate=gate)
        except TransportError as exc:
            answer = exc
        if session.mail_sent_at is not None:
            _started(driver, session.mail_sent_at)
        driver.st.last_used = time.monotonic()
        await _record(driver, claim, run, ready, answer)
        if after is not None and eager:
            # Marked now, a whole delay before its slot, in the commit recording this
            # one: a commit slower than its lead (an fsync spike) would delay the start,
            # and with it every later one of the lane; nor does it run during a start.
            _start_mark(driver, run, after, eager=True)


def _start_mark(
    driver: LaneDriver, run: _Run, m: ClaimedMessage, *, eager: bool = False
) -> asyncio.Task[ClaimedMessage | None]:
    task = asyncio.ensure_future(_mark(driver, run, m, (m.slot or utcnow()), eager))
    run.marks[m.id] = task
    return task


async def _mark(
    driver: LaneDriver, run: _Run, m: ClaimedMessage, slot: datetime, eager: bool = False
) -> ClaimedMessage | None:
    """Mark ``m`` sending a little ahead of its slot (``eager``: up to
    ``MAX_COMMIT_LEAD``), so that the commit's latency does not delay the start; None if
    it is no longer ours."""
    lead = min(max(MIN_COMMIT_LEAD, 4 * driver.st.commit_lead), MAX_COMMIT_LEAD)
    if eager:
        lead = MAX_COMMIT_LEAD
    if not await _sleep_until(driver, slot - timedelta(seconds=lead)):
        return None
    run.committing.add(m.id)
    began = time.monotonic()
    ready = await driver.mark_sending([m], run.ahead)
    if not ready:
        return None
    took = time.monotonic() - began
    driver.st.commit_lead = 0.8 * driver.st.commit_lead + 0.2 * took
    driver.ctx.waiting.discard(m.id)  # sending: the heartbeat renews it now
    run.marked[m.id] = ready[0]
    return ready[0]


async def _record(
    driver: LaneDriver,
    claim: Claim,
    run: _Run,
    m: ClaimedMessage,
    answer: SubmitResult | TransportError,
) -> None:
    """A clean delivery is recorded beside the next submissions (its commit is not on
    the next slot's path); any other answer first, with the ones before it, since it
    may pause or reconnect the lane before the next message goes."""
    for task in [t for t in run.records if t.done()]:
        run.records.remove(task)
        task.result()  # a failed record stops the lane, as it would have inline
    if isinstance(answer, SubmitResult) and answer.delivered and not answer.rejected:
        run.records.append(asyncio.ensure_future(driver.record(claim, [(m, answer)])))
        return
    records, run.records = run.records, []
    for task in records:
        await task
    await driver.record(claim, [(m, answer)])


def _started(driver: LaneDriver, began: float) -> None:
    """A paced submission was handed to the socket by ``began`` (monotonic): the next
    one of the lane starts at least ``delay_ms`` after it."""
    wall = time.time() - (time.monotonic() - began)  # two adjacent reads: no gap
    driver.st.last_start_mono = began
    driver.st.last_start_wall = datetime.fromtimestamp(wall, UTC)
    if starts_log.isEnabledFor(logging.INFO):
        starts_log.info("%s %.6f", driver.st.name, wall)


async def _sleep_until(driver: LaneDriver, when: datetime) -> bool:
    """Sleep until ``when`` (wall clock); False if the worker is stopping."""
    delta = (when - utcnow()).total_seconds()
    if delta <= 0:
        return not driver.ctx.stopping.is_set()
    try:
        await asyncio.wait_for(driver.ctx.stopping.wait(), delta)
    except TimeoutError:
        return True
    return False
