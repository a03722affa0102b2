"""Pacing: when a paced submission may start. The outbox hands the SMTP session a start
gate; the session prepares its commands, awaits the gate, and writes at once.
"""

from __future__ import annotations

import asyncio
import time

from sendas.smtp import StartGate

SPIN = 0.0015
"""The last moments before a timed start are waited for by yielding to the event loop
rather than by a timer, whose wake-up is up to a millisecond late."""


def start_gate(
    not_before: float, *, previous_start: float | None = None, delay: float = 0.0
) -> StartGate:
    """A gate that opens at ``not_before`` (``time.monotonic()`` seconds), and never sooner
    than ``delay`` seconds after ``previous_start``, the previous actual start of the lane
    (which may have been late).

    No margin is added: ``previous_start`` is read after the previous write returned (its
    MAIL FROM was with the kernel by then), and this start's write begins after the gate
    opens, so the two reach the kernel at least ``delay`` apart. A margin would not cover a
    real network's jitter, and would add to every gap of a lane that runs behind its
    slots."""
    deadline = not_before
    if previous_start is not None:
        deadline = max(deadline, previous_start + delay)

    async def gate() -> None:
        await wait_until(deadline)

    return gate


async def wait_until(deadline: float) -> None:
    """Sleep until the monotonic time ``deadline``: a timer for the most of it, then
    yielding to the loop (other sessions keep running) for the last moments."""
    rest = deadline - SPIN - time.monotonic()
    if rest > 0:
        await asyncio.sleep(rest)
    while time.monotonic() < deadline:  # noqa: ASYNC110 - a deadline, not an event
        await asyncio.sleep(0)
