"""How many form letters of a paced lane go to a render process at once
(``sendas.outbox.paced.job_size``): many on a long delay, fewer when the lane's letters
render slowly, so that a job's first message is ready for its slot."""

from __future__ import annotations

from sendas.outbox.paced import AHEAD_ITEM_MS, job_size


def test_a_long_delay_renders_many_letters_per_job() -> None:
    assert job_size(1000, None) == 1000 // AHEAD_ITEM_MS == 40
    assert job_size(1000, 0.002) == 40  # a letter in 2 ms: 40 take 80 ms


def test_a_short_delay_renders_one_at_a_time() -> None:
    assert job_size(20, None) == 1
    assert job_size(50, 0.001) == 2


def test_slow_letters_make_smaller_jobs_that_fit_half_a_delay() -> None:
    """60 ms a letter at one a second: 8 per job (480 ms), not 40 (2.4 s, every job's
    first message late by 1.4 s, the lane drifting further at each job)."""
    assert job_size(1000, 0.06) == 8
    assert job_size(1000, 0.06) * 0.06 <= 1.0 / 2
    assert job_size(1000, 2.0) == 1  # slower than the delay: one at a time
