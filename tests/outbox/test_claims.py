"""A lane's ready messages are read per source (its single messages, each running form
letter) and merged in the order they are due: a worker's poll (``lanes._ready_lanes``) and
its claims (``claims._ready_rows``) never read the messages of a paused form letter, nor an
alias's finished letters, and a poll never looks at aliases without mail, so their cost
does not grow with any of these (counted in SQLite's virtual machine instructions, which
do not depend on the machine's speed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from sendas.context import AppContext
from sendas.db.models import Campaign, Message, utcnow
from sendas.outbox.claims import _ready_rows
from sendas.outbox.lanes import _ready_lanes, alias_lane
from sendas.services.common import Actor
from tests.conftest import make_actor
from tests.outbox.conftest import sink_alias
from tests.outbox.test_crash import form_letter


def _letter(ctx: AppContext, actor: Actor, alias_id: int, count: int, status: str) -> list[int]:
    letter = form_letter(ctx, actor, alias_id, count)
    with ctx.db.write() as s:
        s.execute(update(Campaign).where(Campaign.id == letter).values(status=status))
        return list(s.scalars(select(Message.id).where(Message.campaign_id == letter)))


def _lane(ctx: AppContext) -> tuple[Actor, int, list[int]]:
    """An alias whose lane holds, due one second apart and interleaved: messages of a
    running letter, single messages, and one retrying message due first of all."""
    actor = make_actor(ctx, "claims@example.com")
    alias_id = sink_alias(ctx, actor, 2525, "claims", 0)
    ids = _letter(ctx, actor, alias_id, 7, "running")
    now = utcnow()
    with ctx.db.write() as s:
        for k, i in enumerate(ids):
            s.execute(update(Message).where(Message.id == i)
                      .values(next_attempt_at=now - timedelta(seconds=60 - k)))  # fmt: skip
        # Two of them become single messages (no form letter), one is retrying.
        s.execute(update(Message).where(Message.id.in_(ids[1:5:2])).values(campaign_id=None))
        s.execute(update(Message).where(Message.id == ids[0]).values(status="retrying"))
    return actor, alias_id, ids


def test_single_messages_and_running_letters_are_claimed_in_the_order_due(
    either_db: AppContext,
) -> None:
    ctx = either_db
    actor, alias_id, ids = _lane(ctx)
    paused = _letter(ctx, actor, alias_id, 20, "paused")
    with ctx.db.write() as s:  # the paused letter is due before all of them
        s.execute(update(Message).where(Message.id.in_(paused))
                  .values(next_attempt_at=utcnow() - timedelta(hours=1)))  # fmt: skip
    lane = alias_lane(alias_id)
    with ctx.db.write() as s:
        every = [r.id for r in _ready_rows(s, lane, utcnow(), 100)]
        first = [r.id for r in _ready_rows(s, lane, utcnow(), 3)]
        lanes = _ready_lanes(s, utcnow(), set())
    # Queued ones first, in the order due (singles and the letter's interleaved), then the
    # retrying one; none of the paused letter's.
    assert every == [*ids[1:], ids[0]]
    assert first == ids[1:4]
    assert lanes == [lane]


def test_a_lane_with_only_a_paused_letter_is_not_taken(either_db: AppContext) -> None:
    ctx = either_db
    actor = make_actor(ctx, "paused@example.com")
    alias_id = sink_alias(ctx, actor, 2525, "paused", 0)
    _letter(ctx, actor, alias_id, 10, "paused")
    with ctx.db.write() as s:
        assert _ready_lanes(s, utcnow(), set()) == []
        assert _ready_rows(s, alias_lane(alias_id), utcnow(), 100) == []


@contextmanager
def vm_steps(session: Session) -> Iterator[list[int]]:
    """SQLite virtual machine instructions run on ``session``'s connection meanwhile
    (counted in thousands)."""
    raw: Any = session.connection().connection.dbapi_connection
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    raw.set_progress_handler(tick, 1000)
    try:
        yield count
    finally:
        raw.set_progress_handler(None, 0)


def _cost(ctx: AppContext, work: Callable[[Session], object]) -> int:
    with ctx.db.write() as s, vm_steps(s) as steps:
        work(s)
    return steps[0]


def _poll_and_claim(ctx: AppContext, lane: str, ready: int) -> tuple[int, int]:
    """The cost of a poll that finds only ``lane``, and of a claim that reads its ``ready``
    messages."""

    def poll(s: Session) -> None:
        assert _ready_lanes(s, utcnow(), set()) == [lane]

    def claim(s: Session) -> None:
        assert len(_ready_rows(s, lane, utcnow(), 100)) == ready

    return _cost(ctx, poll), _cost(ctx, claim)


def test_a_paused_letter_adds_nothing_to_a_poll_or_a_claim(ctx: AppContext) -> None:
    actor, alias_id, _ = _lane(ctx)
    lane = alias_lane(alias_id)

    _letter(ctx, actor, alias_id, 50, "paused")
    before = _poll_and_claim(ctx, lane, 7)
    _letter(ctx, actor, alias_id, 3000, "paused")
    after = _poll_and_claim(ctx, lane, 7)
    # Read one by one, 3,000 more messages cost hundreds of thousands of instructions.
    for b, a in zip(before, after, strict=True):
        assert a <= b + 5, (before, after)


def test_finished_letters_add_nothing_to_a_poll_or_a_claim(ctx: AppContext) -> None:
    """An alias's running letters are found by (alias, status): years of completed letters
    on it are not read at every poll and claim. Its lane holds only a running letter's
    messages, so that a poll looks for them (a single message ready would answer first)."""
    actor = make_actor(ctx, "history@example.com")
    alias_id = sink_alias(ctx, actor, 2525, "history", 0)
    _letter(ctx, actor, alias_id, 7, "running")
    lane = alias_lane(alias_id)

    def finished(count: int) -> None:
        with ctx.db.write() as s:
            s.execute(
                insert(Campaign),
                [{"user_id": actor.id, "alias_id": alias_id, "subject": "old",
                  "status": ("completed", "cancelled")[k % 2], "total": 1}
                 for k in range(count)],
            )  # fmt: skip

    finished(10)
    before = _poll_and_claim(ctx, lane, 7)
    finished(3000)
    after = _poll_and_claim(ctx, lane, 7)
    # Read one by one, 3,000 letters cost about 15 thousand instructions each time.
    for b, a in zip(before, after, strict=True):
        assert a <= b + 5, (before, after)


def test_aliases_without_mail_add_nothing_to_a_poll(ctx: AppContext) -> None:
    """A poll looks only at lanes holding queued or retrying mail: the aliases that send
    nothing now (most of them, at any moment) are not read one by one."""
    actor, alias_id, _ = _lane(ctx)
    lane = alias_lane(alias_id)

    idle = [sink_alias(ctx, actor, 2525, f"idle{k}", 0) for k in range(5)]
    settled = _letter(ctx, actor, idle[0], 3, "running")
    with ctx.db.write() as s:  # settled mail does not count either
        s.execute(update(Message).where(Message.id.in_(settled)).values(status="sent"))
    before = _poll_and_claim(ctx, lane, 7)[0]
    for k in range(300):
        sink_alias(ctx, actor, 2525, f"more{k}", 0)
    after = _poll_and_claim(ctx, lane, 7)[0]
    # Looked at one by one, 300 aliases cost about 25 thousand instructions.
    assert after <= before + 2, (before, after)
