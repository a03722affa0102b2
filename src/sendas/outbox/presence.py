"""Which outbox workers are alive: each announces itself in ``workers`` from its heartbeat
thread (a row renewed at every beat, expiring after the takeover time, as its lane leases
do) and withdraws when it stops cleanly. A row past its expiry is a dead worker: ignored,
and swept now and then. ``lanes.acquire_lanes`` counts the live ones to take a fair share.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sendas.db.models import LiveWorker

WORKERS: Table = LiveWorker.metadata.tables[LiveWorker.__tablename__]

# Workers other than the caller whose announcement has not expired.
_OTHERS_LIVE = (
    select(func.count())
    .select_from(WORKERS)
    .where(WORKERS.c.expires_at >= bindparam("now"), WORKERS.c.id != bindparam("me"))
)


def announce(session: Session, worker: str, now: datetime, until: datetime) -> None:
    """Say that ``worker`` is alive until ``until`` (an upsert of its row)."""
    row = {"id": worker, "started_at": now, "beat_at": now, "expires_at": until}
    renew = {"beat_at": now, "expires_at": until}
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(WORKERS).values(row)
        session.execute(pg.on_conflict_do_update(index_elements=[WORKERS.c.id], set_=renew))
    else:
        lite = sqlite.insert(WORKERS).values(row)
        session.execute(lite.on_conflict_do_update(index_elements=[WORKERS.c.id], set_=renew))


def sweep(session: Session, now: datetime) -> None:
    """Delete the rows of workers that died (expired): they are ignored anyway."""
    session.execute(delete(WORKERS).where(WORKERS.c.expires_at < now))


def withdraw(session: Session, worker: str) -> None:
    """``worker`` stops cleanly: the others stop counting it at once."""
    session.execute(delete(WORKERS).where(WORKERS.c.id == worker))


def other_live_workers(session: Session, worker: str, now: datetime) -> int:
    return int(session.scalar(_OTHERS_LIVE, {"now": now, "me": worker}) or 0)
