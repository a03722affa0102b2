"""Pacing: when a paced submission may start. The outbox hands the SMTP session a start
gate; the session prepares its commands, awaits the gate, and writes at once.
"""

from __future__ import annotations

import asyncio
import time

from sendas.smtp import StartGate

MARGIN = 0.0001
"""Added to ``delay_ms`` after the previous actual start (just after its MAIL FROM was
handed to the socket): a hair for the jitter of the network stack."""

SPIN = 0.0015
"""The last moments before a timed start are waited for by yielding to the event loop
rather than by a timer, whose wake-up is up to a millisecond late."""


def start_gate(
    not_before: float, *, previous_start: float | None = None, delay: float = 0.0
) -> StartGate:
    """A gate that opens at ``not_before`` (``time.monotonic()`` seconds), and never sooner
    than ``delay`` seconds (plus :data:`MARGIN`) after ``previous_start``, the previous
    actual start of the lane (which may have been late)."""
    deadline = not_before
    if previous_start is not None:
        deadline = max(deadline, previous_start + delay + MARGIN)

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
