"""Paced sending: one message at a time, each started at its slot and never sooner than
``delay_ms`` after the previous actual start of the lane (the delivery promise on pacing).

Slots are planned from the previous planned slot (no drift). The commit that marks a
message ``sending`` is made a little ahead of its slot (at most ``MAX_COMMIT_LEAD``), so
that its latency does not delay the start; on a short delay it is the commit recording the
message before. Form letters are rendered one slot ahead.
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
from sendas.outbox.claims import Claim, ClaimedMessage, Rendered, release_messages
from sendas.outbox.lanes import unreserve
from sendas.smtp import Envelope, SubmitResult

if TYPE_CHECKING:
    from sendas.outbox.driver import LaneDriver

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
unsent. A message whose slot is this close when the one before it is recorded is marked
in that same commit, a whole gap ahead: on a short delay one commit per message, not two
squeezed into the gap one behind the other (the mark waiting for the record)."""

Ahead = dict[int, "asyncio.Task[dict[int, Rendered | str]]"]
"""Form letters of a paced claim being rendered ahead of their slots, by message id."""


@dataclass
class _Run:
    ahead: Ahead = field(default_factory=dict)
    marked: ClaimedMessage | None = None  # the next message, marked sending with a record


def _render_ahead(driver: LaneDriver, ahead: Ahead, message: ClaimedMessage | None) -> None:
    """Start rendering a paced message's form letter, due at its slot (the renderer
    serves the earliest slots of all lanes first). Started one slot ahead, so that the
    load is spread over time and the slot finds the message ready."""
    if message is not None and message.render is not None and message.id not in ahead:
        ahead[message.id] = asyncio.create_task(driver.render([message]))


async def send_paced(driver: LaneDriver, claim: Claim) -> None:
    run = _Run()
    waiting = [m.id for m in claim.messages]
    driver.ctx.waiting.update(waiting)
    try:
        await _send_paced(driver, claim, run)
    finally:
        driver.ctx.waiting.difference_update(waiting)
        for task in run.ahead.values():
            task.cancel()
        await asyncio.gather(*run.ahead.values(), return_exceptions=True)
        if run.marked is not None:  # marked ahead, never submitted: queued again
            ids = [run.marked.id]
            driver.ctx.held.difference_update(ids)
            await driver.ctx.tx.run(
                partial(release_messages, owner=driver.ctx.owner, ids=ids, was_sending=True)
            )


async def _send_paced(driver: LaneDriver, claim: Claim, run: _Run) -> None:
    delay = claim.delay_ms / 1000
    following = [*claim.messages[1:], None]
    for m, after in zip(claim.messages, following, strict=True):
        if driver.ctx.stopping.is_set():
            return
        _render_ahead(driver, run.ahead, m)
        _render_ahead(driver, run.ahead, after)
        # Slots are planned from the previous planned slot (no drift); the start waits
        # for the slot, and for delay_ms (plus a hair) after the previous actual start.
        target = m.slot or utcnow()
        ready = run.marked or await _mark(driver, claim, run, m, target, delay)
        if ready is None:
            return
        session = await driver.ensure_session(claim.endpoint)
        start = time.monotonic() + (target - utcnow()).total_seconds()
        # The previous start may have been late: never start closer than delay_ms.
        gate = pacing.start_gate(start, previous_start=driver.st.last_start_mono, delay=delay)
        envelope = Envelope(ready.envelope_from, ready.recipients, ready.raw)
        run.marked = None
        answer: SubmitResult | TransportError
        try:
            (answer,) = await session.submit_many([envelope], start_gate=gate)
        except TransportError as exc:
            answer = exc
        if session.mail_sent_at is not None:
            _started(driver, session.mail_sent_at)
        driver.st.last_used = time.monotonic()
        if after is not None and _near(driver, after):
            if not await _record_and_mark(driver, claim, run, (ready, answer), after):
                return
        else:
            await driver.record(claim, [(ready, answer)])


async def _mark(
    driver: LaneDriver, claim: Claim, run: _Run, m: ClaimedMessage, target: datetime, delay: float
) -> ClaimedMessage | None:
    """Mark ``m`` sending a little ahead of its slot, so that the commit's latency does
    not delay the start; None if the claim ends here."""
    lead = min(max(MIN_COMMIT_LEAD, 4 * driver.st.commit_lead), MAX_COMMIT_LEAD, delay / 2)
    if not await _sleep_until(driver, target - timedelta(seconds=lead)):
        return None
    await driver.ensure_session(claim.endpoint)
    began = time.monotonic()
    ready = await driver.mark_sending([m], run.ahead)
    if not ready:
        await _unreserve(driver)
        return None
    took = time.monotonic() - began
    driver.st.commit_lead = 0.8 * driver.st.commit_lead + 0.2 * took
    driver.ctx.waiting.discard(m.id)  # sending: the heartbeat renews it now
    return ready[0]


def _near(driver: LaneDriver, after: ClaimedMessage) -> bool:
    """The next slot is close enough to mark its message with this record."""
    if after.slot is None or driver.ctx.stopping.is_set():
        return False
    return (after.slot - utcnow()).total_seconds() <= MAX_COMMIT_LEAD


async def _record_and_mark(
    driver: LaneDriver,
    claim: Claim,
    run: _Run,
    item: tuple[ClaimedMessage, SubmitResult | TransportError],
    after: ClaimedMessage,
) -> bool:
    """Record ``item`` and mark ``after`` sending in one group commit; False if ``after``
    is no longer ours (the claim ends). An answer that stops the lane raises after both,
    and ``send_paced`` gives ``after`` back."""
    record = asyncio.ensure_future(driver.record(claim, [item]))
    mark = asyncio.ensure_future(driver.mark_sending([after], run.ahead))
    recorded, marked = await asyncio.gather(record, mark, return_exceptions=True)
    if not isinstance(marked, BaseException) and marked:
        run.marked = marked[0]
        driver.ctx.waiting.discard(after.id)
    if isinstance(recorded, BaseException):
        raise recorded
    if isinstance(marked, BaseException):
        raise marked
    if run.marked is None:
        await _unreserve(driver)
        return False
    return True


async def _unreserve(driver: LaneDriver) -> None:
    """Paused, cancelled or taken meanwhile: the rest of this claim is likely the same
    form letter. Give it back (see _drive) with its slots."""
    await driver.ctx.tx.run(
        partial(unreserve, lane=driver.st.name, owner=driver.ctx.owner,
                next_send_at=driver.st.next_floor)
    )  # fmt: skip


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
