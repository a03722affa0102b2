"""The start gate the outbox hands to the SMTP session: it opens at the slot, and never
sooner than delay after the previous actual start."""

from __future__ import annotations

import time

from sendas.outbox import pacing


async def test_gate_opens_at_the_slot() -> None:
    slot = time.monotonic() + 0.03
    gate = pacing.start_gate(slot)
    await gate()
    assert time.monotonic() >= slot


async def test_gate_waits_delay_after_a_late_previous_start() -> None:
    now = time.monotonic()
    gate = pacing.start_gate(now, previous_start=now, delay=0.04)
    await gate()
    assert time.monotonic() >= now + 0.04


async def test_gate_in_the_past_opens_at_once() -> None:
    before = time.monotonic()
    await pacing.start_gate(before - 1.0, previous_start=before - 2.0, delay=0.5)()
    assert time.monotonic() - before < 0.5
