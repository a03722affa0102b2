"""Per-campaign counts of messages by status (``campaign_counts``), so that progress, the
history and completion read a few rows instead of counting a letter's messages.

Every path that changes the status of a form letter's message collects the moves in a
:class:`Moves` and applies them in the same transaction, before completing letters
(:mod:`sendas.outbox.completion` reads the counts). The counts change by deltas
(``SET n = n + :d``): two workers on PostgreSQL never overwrite each other's, and rows are
updated in one order (campaign, status) so that they cannot deadlock on them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from sendas.db.models import CampaignCount, Message
from sendas.statuses import MessageStatus

COUNTS: Table = CampaignCount.metadata.tables[CampaignCount.__tablename__]
MARK_EVERY = timedelta(seconds=30)
"""The ``sent`` row's marks roll this often: the rate covers the last 30 to 60 seconds."""

_ADD = (
    update(COUNTS)
    .where(COUNTS.c.campaign_id == bindparam("cid"), COUNTS.c.status == bindparam("st"))
    .values(n=COUNTS.c.n + bindparam("d"))
)
# The marks roll when the newer one is older than MARK_EVERY (before the delta is added).
_ROLL = (
    update(COUNTS)
    .where(
        COUNTS.c.campaign_id == bindparam("cid"),
        COUNTS.c.status == MessageStatus.SENT,
        COUNTS.c.recent_at < bindparam("before"),
    )
    .values(mark_n=COUNTS.c.recent_n, mark_at=COUNTS.c.recent_at, recent_n=COUNTS.c.n,
            recent_at=bindparam("now"))
)  # fmt: skip


class Moves:
    """Status changes of form letters' messages, applied as one delta per (campaign, status)."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: Counter[tuple[int, str]] = Counter()

    def move(self, campaign_id: int | None, old: str, new: str, n: int = 1) -> None:
        """``n`` messages of ``campaign_id`` (None: not a form letter's) went ``old`` -> ``new``."""
        if campaign_id is None or old == new or n == 0:
            return
        self._d[(campaign_id, str(old))] -= n
        self._d[(campaign_id, str(new))] += n

    def campaigns(self) -> set[int]:
        return {cid for cid, _ in self._d}

    def apply(self, session: Session, now: datetime) -> None:
        """Write the deltas (in a fixed order), rolling the rate marks of letters that sent."""
        deltas = sorted((key, d) for key, d in self._d.items() if d != 0)
        self._d.clear()
        if not deltas:
            return
        rows = [{"cid": cid, "st": st, "d": d} for (cid, st), d in deltas]
        sent = [cid for (cid, st), d in deltas if st == MessageStatus.SENT and d > 0]
        if sent:
            before = now - MARK_EVERY
            session.execute(_ROLL, [{"cid": c, "before": before, "now": now} for c in sent])
        session.execute(_ADD, rows)


def init_counts(session: Session, campaign_id: int, queued: int, now: datetime) -> None:
    """Create a new letter's rows (every status, ``queued`` messages waiting), or add
    ``queued`` to them if they exist."""
    exists = session.execute(
        select(COUNTS.c.status).where(COUNTS.c.campaign_id == campaign_id).limit(1)
    ).first()
    if exists is None:
        session.execute(
            insert(COUNTS),
            [{"campaign_id": campaign_id, "status": s.value, "n": 0, "mark_n": 0,
              "mark_at": now, "recent_n": 0, "recent_at": now}
             for s in MessageStatus],
        )  # fmt: skip
    session.execute(_ADD, {"cid": campaign_id, "st": MessageStatus.QUEUED, "d": queued})


def read_counts(session: Session, campaign_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """The counts by status of each campaign (one indexed read of a few rows each)."""
    ids = list(campaign_ids)
    out: dict[int, dict[str, int]] = {cid: {} for cid in ids}
    if not ids:
        return out
    for cid, status, n in session.execute(
        select(COUNTS.c.campaign_id, COUNTS.c.status, COUNTS.c.n).where(
            COUNTS.c.campaign_id.in_(ids)
        )
    ):
        out[cid][status] = int(n)
    return out


def sent_rate(session: Session, campaign_id: int, now: datetime, since: datetime) -> float:
    """Messages sent per second since the older mark (30 to 60 s ago while sending; older
    when sending stopped, so the rate decays), or since ``since`` (the letter's start)."""
    row: Any = session.execute(
        select(COUNTS.c.n, COUNTS.c.mark_n, COUNTS.c.mark_at).where(
            COUNTS.c.campaign_id == campaign_id, COUNTS.c.status == MessageStatus.SENT
        )
    ).first()
    if row is None:
        return 0.0
    start, base = since, 0
    if row.mark_at is not None and row.mark_at > since:
        start, base = row.mark_at, int(row.mark_n)
    seconds = max((now - start).total_seconds(), 1.0)
    return max(0, int(row.n) - base) / seconds


def full_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """The counts by a full scan of the messages: what the kept counts must equal (tests,
    and ``sendas`` operators checking by hand)."""
    rows = session.execute(
        select(Message.status, func.count())
        .where(and_(Message.campaign_id == campaign_id))
        .group_by(Message.status)
    )
    return {str(status): int(n) for status, n in rows}


def recount(session: Session, campaign_id: int) -> None:
    """Set the kept counts from a full count (a repair, and for tests that change statuses
    by hand): one scan of the letter's messages."""
    session.flush()
    found = full_counts(session, campaign_id)
    session.execute(
        update(COUNTS)
        .where(COUNTS.c.campaign_id == campaign_id, COUNTS.c.status == bindparam("st"))
        .values(n=bindparam("n")),
        [{"st": s.value, "n": found.get(s.value, 0)} for s in MessageStatus],
    )
