"""Outbox tunables: values that cannot work are refused; pipelined batches are sized by the
time they take on the wire."""

from __future__ import annotations

import pytest

from sendas.outbox.config import OutboxConfig
from sendas.outbox.state import LaneState


@pytest.mark.parametrize(
    "values",
    [
        {"batch_size": 0},
        {"first_batch": 0},
        {"max_paced_batch": 0},
        {"batch_seconds": 0},
        {"lease_seconds": 0},
        {"render_processes": -1},
        {"render_nice": -1},
        {"render_nice": 20},
        {"max_attempts": 0},
        {"backoff_base": 10.0, "backoff_max": 5.0},
    ],
)
def test_values_that_cannot_work_are_refused(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OutboxConfig(**values)


def test_first_batch_before_the_link_is_known() -> None:
    assert LaneState("alias:1").batch_limit(OutboxConfig(first_batch=20)) == 20


def test_a_fast_link_gets_the_largest_batch() -> None:
    cfg = OutboxConfig(batch_size=100, batch_seconds=0.5)
    lane = LaneState("alias:1")
    lane.note_batch(100, 0.03)  # 0.3 ms a message: 0.5 s would hold 1,666
    assert lane.batch_limit(cfg) == 100


def test_a_slow_link_gets_batches_of_about_batch_seconds() -> None:
    cfg = OutboxConfig(batch_size=100, batch_seconds=0.5)
    lane = LaneState("alias:1")
    lane.note_batch(20, 20 * 0.02)  # one 20 ms round trip a message
    assert lane.batch_limit(cfg) == 25
    # Smoothed: one quick batch does not undo what the link showed before.
    lane.note_batch(25, 25 * 0.001)
    assert 25 < lane.batch_limit(cfg) < 100


def test_a_very_slow_link_still_sends_one_at_a_time() -> None:
    lane = LaneState("alias:1")
    lane.note_batch(1, 5.0)
    assert lane.batch_limit(OutboxConfig(batch_seconds=0.5)) == 1
