"""Workers take their fair share of the lanes with work, counted among the live workers
(``sendas.outbox.presence``): acquire_lanes called as the workers' polls call it, on
SQLite and on PostgreSQL, with workers announced in the ``workers`` table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from sendas.context import AppContext
from sendas.db.models import LiveWorker, utcnow
from sendas.outbox import OutboxConfig
from sendas.outbox.beat import Heartbeat
from sendas.outbox.lanes import acquire_lanes, alias_lane, excess_lanes, release_lane
from sendas.outbox.presence import announce, sweep, withdraw
from tests.conftest import make_actor
from tests.outbox.conftest import queue, sink_alias

CFG = OutboxConfig(lease_seconds=30.0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Iterator[AppContext]:
    if request.param == "sqlite":
        yield request.getfixturevalue("ctx")
    else:
        yield request.getfixturevalue("pg_shared")[0]


def _four_lanes(ctx: AppContext) -> list[str]:
    """Four aliases with a message queued each (the port is never reached here)."""
    actor = make_actor(ctx, "share@example.com")
    lanes = []
    for k in range(4):
        alias_id = sink_alias(ctx, actor, 9, f"a{k}", 0)
        queue(ctx, actor, alias_id, 1)
        lanes.append(alias_lane(alias_id))
    return lanes


def _announce(ctx: AppContext, worker: str, *, alive: bool = True) -> None:
    now = utcnow()
    until = now + timedelta(seconds=30 if alive else -10)
    with ctx.db.write() as s:
        announce(s, worker, now - timedelta(seconds=60), until)


def _acquire(ctx: AppContext, worker: str, skip: set[str] | None = None) -> list[str]:
    with ctx.db.write() as s:
        return acquire_lanes(s, worker, utcnow(), CFG, skip=skip or set(), limit=1000)


def _release(ctx: AppContext, worker: str, lane: str) -> None:
    with ctx.db.write() as s:
        release_lane(s, lane, worker, None)


def test_alone_a_worker_takes_every_lane_and_ignores_dead_workers(db: AppContext) -> None:
    lanes = _four_lanes(db)
    _announce(db, "solo")
    _announce(db, "dead", alive=False)  # stopped without withdrawing: its row expired
    assert sorted(_acquire(db, "solo")) == sorted(lanes)


def test_two_live_workers_take_two_lanes_each(db: AppContext) -> None:
    lanes = _four_lanes(db)
    _announce(db, "a")
    _announce(db, "b")
    first = _acquire(db, "a")
    assert len(first) == 2
    assert _acquire(db, "a", set(first)) == []  # at its share: no more
    second = _acquire(db, "b")
    assert sorted(first + second) == sorted(lanes)


def test_a_late_worker_gets_its_share_as_lanes_are_handed_back(db: AppContext) -> None:
    lanes = _four_lanes(db)
    _announce(db, "a")
    held = _acquire(db, "a")
    assert sorted(held) == sorted(lanes)  # alone when it polled
    _announce(db, "b")
    assert _acquire(db, "b") == []  # every lane is driven by a live worker
    # a hands its lanes back one at a time (lane_hold_seconds); it skips each for a moment
    # (its cooldown), then polls again without it.
    _release(db, "a", held[0])
    assert _acquire(db, "a", set(held[1:]) | {held[0]}) == []
    assert _acquire(db, "b") == [held[0]]  # b drives none: at least one
    _release(db, "a", held[1])
    assert _acquire(db, "a", set(held[2:])) == []  # a drives 2 of 4 with 2 live: its share
    assert _acquire(db, "b", {held[0]}) == [held[1]]
    _release(db, "a", held[2])
    assert _acquire(db, "b", set(held[:2])) == []  # b at its share: a takes it back
    assert _acquire(db, "a", {held[3]}) == [held[2]]


def test_a_dead_workers_lanes_go_to_the_survivor_after_its_lease(db: AppContext) -> None:
    lanes = _four_lanes(db)
    _announce(db, "a")
    _announce(db, "b")
    of_a = _acquire(db, "a")
    of_b = _acquire(db, "b")
    # b dies: its row and its lane leases run out together (the same beat wrote both).
    later = utcnow() + timedelta(seconds=CFG.lease_seconds + 1)
    with db.db.write() as s:
        announce(s, "a", later, later + timedelta(seconds=30))
        taken = acquire_lanes(s, "a", later, CFG, skip=set(of_a), limit=1000)
    assert sorted(taken) == sorted(of_b)
    assert sorted(of_a + taken) == sorted(lanes)


def test_withdraw_and_sweep_remove_rows(db: AppContext) -> None:
    _announce(db, "a")
    _announce(db, "b")
    _announce(db, "dead", alive=False)
    with db.db.write() as s:
        withdraw(s, "a")
        sweep(s, utcnow())
    with db.db.read() as s:
        assert list(s.scalars(select(LiveWorker.id))) == ["b"]


def _excess(ctx: AppContext, worker: str, driving: set[str]) -> int:
    with ctx.db.write() as s:
        return excess_lanes(s, worker, utcnow(), driving)


def test_a_worker_beyond_its_share_hands_back_only_what_no_free_lane_covers(
    db: AppContext,
) -> None:
    """Alone: no excess. A second live worker with nothing: the first has two beyond its
    share. While a lane with work is free, nothing is handed back (the second takes that
    first), so lanes are not handed back just after being taken."""
    lanes = _four_lanes(db)
    _announce(db, "a")
    mine = set(_acquire(db, "a"))
    assert mine == set(lanes) and _excess(db, "a", mine) == 0  # alone
    _announce(db, "b")
    assert _excess(db, "a", mine) == 2
    _release(db, "a", lanes[0])  # a hands one back: free, with work
    assert _excess(db, "a", mine - {lanes[0]}) == 0
    assert _acquire(db, "b") == [lanes[0]]
    assert _excess(db, "a", mine - {lanes[0]}) == 1


def test_a_retired_worker_is_not_counted_while_it_drains(db: AppContext) -> None:
    """A stopping worker (draining its lanes) withdraws at its next beat although it goes on
    renewing what it holds: the others no longer leave its share untaken."""
    lanes = _four_lanes(db)
    beat = Heartbeat(db.db, "draining", 1.0, 30.0, lambda: ([], []), lambda lost: None)
    beat.beat()
    _announce(db, "a")
    first = _acquire(db, "a")
    assert len(first) == 2  # two live workers: half each
    beat.retire()
    beat.beat()
    with db.db.read() as s:
        assert list(s.scalars(select(LiveWorker.id))) == ["a"]
    rest = _acquire(db, "a", set(first))  # alone now: the rest too
    assert sorted(first + rest) == sorted(lanes)
