"""Paced sending: one message at a time, each started at its slot and never sooner than
``delay_ms`` after the previous actual start of the lane (the delivery promise on pacing).

Slots are planned from the previous planned slot (no drift). The commit that marks a
message ``sending`` is made a little ahead of its slot, so that its latency does not delay
the start; form letters are rendered one slot ahead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from sendas.db.models import utcnow
from sendas.errors import TransportError
from sendas.outbox import pacing
from sendas.outbox.claims import Claim, ClaimedMessage, Rendered
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
MAX_COMMIT_LEAD = 0.05

Ahead = dict[int, "asyncio.Task[dict[int, Rendered | str]]"]
"""Form letters of a paced claim being rendered ahead of their slots, by message id."""


def _render_ahead(driver: LaneDriver, ahead: Ahead, message: ClaimedMessage | None) -> None:
    """Start rendering a paced message's form letter, due at its slot (the renderer
    serves the earliest slots of all lanes first). Started one slot ahead, so that the
    load is spread over time and the slot finds the message ready."""
    if message is not None and message.render is not None and message.id not in ahead:
        ahead[message.id] = asyncio.create_task(driver.render([message]))


async def send_paced(driver: LaneDriver, claim: Claim) -> None:
    ahead: Ahead = {}
    try:
        await _send_paced(driver, claim, ahead)
    finally:
        for task in ahead.values():
            task.cancel()
        await asyncio.gather(*ahead.values(), return_exceptions=True)


async def _send_paced(driver: LaneDriver, claim: Claim, ahead: Ahead) -> None:
    delay = claim.delay_ms / 1000
    following = [*claim.messages[1:], None]
    for m, after in zip(claim.messages, following, strict=True):
        if driver.ctx.stopping.is_set():
            return
        _render_ahead(driver, ahead, m)
        _render_ahead(driver, ahead, after)
        # Slots are planned from the previous planned slot (no drift). The commit that
        # marks the message sending is made a little ahead of the slot, so that its
        # latency does not delay the start; the start itself waits for the slot, and
        # for delay_ms (plus a hair) after the previous actual start.
        target = m.slot or utcnow()
        lead = min(max(MIN_COMMIT_LEAD, 4 * driver.st.commit_lead), MAX_COMMIT_LEAD, delay / 2)
        if not await _sleep_until(driver, target - timedelta(seconds=lead)):
            return
        session = await driver.ensure_session(claim.endpoint)
        began = time.monotonic()
        ready = await driver.mark_sending([m], ahead)
        if not ready:
            # Paused, cancelled or taken meanwhile: the rest of this claim is likely
            # the same form letter. Give it back (see _drive) with its slots.
            await driver.ctx.tx.run(
                partial(unreserve, lane=driver.st.name, owner=driver.ctx.owner,
                        next_send_at=driver.st.next_floor)
            )  # fmt: skip
            return
        m = ready[0]
        took = time.monotonic() - began
        driver.st.commit_lead = 0.8 * driver.st.commit_lead + 0.2 * took
        start = time.monotonic() + (target - utcnow()).total_seconds()
        # The previous start may have been late: never start closer than delay_ms.
        gate = pacing.start_gate(start, previous_start=driver.st.last_start_mono, delay=delay)
        envelope = Envelope(m.envelope_from, m.recipients, m.raw)
        answer: SubmitResult | TransportError
        try:
            (answer,) = await session.submit_many([envelope], start_gate=gate)
        except TransportError as exc:
            answer = exc
        if session.mail_sent_at is not None:
            _started(driver, session.mail_sent_at)
        driver.st.last_used = time.monotonic()
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
