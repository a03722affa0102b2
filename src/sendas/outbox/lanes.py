"""Lanes: one per alias (and one for the database's own settings). A lane is driven by at
most one worker at a time (``owner`` with a lease), carries the pacing reservation
(``next_send_at``) and the pause of its alias. Lane names are made only here.

Every function takes a :class:`Session` inside a write transaction, except the queries at
the end (``aliases_needing_attention``, ``lane_pause``), which only read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sendas.db.models import Alias, Lane, Message, SystemOutgoing
from sendas.db.wake import wake_workers
from sendas.outbox.audit import login_refused
from sendas.outbox.config import OutboxConfig
from sendas.outbox.presence import other_live_workers
from sendas.outbox.tables import LANE, MSG, chunks, running_letters
from sendas.statuses import READY

SYSTEM_LANE = "system"
ALIAS_LANE_PREFIX = "alias:"
NEEDS_ATTENTION = "the alias needs attention: its server refused the sign-in"
# A hold has no end of its own: only ``release_held`` lifts it (e.g. a user enabled again).
HELD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
# One line per lane taken from a worker that missed its heartbeats (tests read it).
takeover_log = logging.getLogger("sendas.outbox.takeover")


def alias_lane(alias_id: int) -> str:
    return f"{ALIAS_LANE_PREFIX}{alias_id}"


def lane_alias_id(lane: str) -> int | None:
    return int(lane[len(ALIAS_LANE_PREFIX) :]) if lane.startswith(ALIAS_LANE_PREFIX) else None


def _insert_lanes(session: Session, names: Sequence[str]) -> None:
    if not names:
        return
    rows = [{"name": n, "needs_attention": False} for n in names]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(Lane).values(rows).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(Lane).values(rows).on_conflict_do_nothing())


def _locked(session: Session, lane: str) -> Lane:
    """The lane's row, locked; created if it does not exist yet."""
    row = session.get(Lane, lane, with_for_update=True)
    if row is None:
        _insert_lanes(session, [lane])
        row = session.get_one(Lane, lane)
    return row


def _ready_exists(lane_expr: Any, alias_id: Any, now: datetime) -> Any:
    """Some message of the lane can be claimed now: a single message, or one of a running
    form letter of ``alias_id`` (None: the lane has no form letters). Messages of a paused
    form letter do not count, or their lanes would be taken and handed back at every poll.

    Each test is an index seek (``ix_messages_claim``: status, lane, form letter, time),
    one per running letter: a paused letter's messages are never read. Checked message by
    message, a poll read all of them, 0.4 µs each, in a write transaction (130 ms a poll
    with 300,000 paused, every quarter of a second)."""
    sources = [Message.campaign_id.is_(None)]
    if alias_id is not None:
        sources.append(Message.campaign_id.in_(running_letters(alias_id)))
    return or_(
        *(
            exists().where(
                Message.status == status,
                Message.lane == lane_expr,
                source,
                Message.next_attempt_at <= now,
            )
            for status in READY
            for source in sources
        )
    )


def _next_lanes() -> Any:
    """The distinct lanes holding a message of status ``st``: a loose index scan of
    ``ix_messages_claim`` (status, lane, ...), each step a seek to the first lane after the
    one found, so one seek per lane with such mail and none per message."""
    status: Any = bindparam("st")
    found = (
        select(func.min(MSG.c.lane).label("lane"))
        .where(MSG.c.status == status)
        .cte("found", recursive=True)
    )
    after = select(func.min(MSG.c.lane)).where(MSG.c.status == status, MSG.c.lane > found.c.lane)
    found = found.union_all(select(after.scalar_subquery()).where(found.c.lane.is_not(None)))
    return select(found.c.lane).where(found.c.lane.is_not(None))


_NEXT_LANES = _next_lanes()


def lanes_holding(session: Session, status: str) -> list[str]:
    """The lanes holding a message of ``status``, due or not, in order: one index seek per
    lane, none per message."""
    return list(session.scalars(_NEXT_LANES, {"st": status}))


def alias_lanes_where(session: Session, lanes: Iterable[str], query: Any) -> list[str]:
    """The alias lanes among ``lanes`` whose alias ``query`` returns (a SELECT of alias ids
    given an expanding ``ids``), in alias order: one query per 500 aliases."""
    ids = sorted(i for n in lanes if (i := lane_alias_id(n)) is not None)
    return [alias_lane(i) for chunk in chunks(ids) for i in session.scalars(query, {"ids": chunk})]


def _lanes_with_mail(session: Session) -> set[str]:
    """The lanes holding queued or retrying mail, due or not."""
    return {lane for st in READY for lane in lanes_holding(session, st)}


def _ready_lanes(session: Session, now: datetime, skip: set[str]) -> list[str]:
    """The lanes with work that can start now (the alias signed in, the database's own
    settings complete), except ``skip``.

    Only lanes holding queued or retrying mail are looked at (``_lanes_with_mail``), due or
    not (a retry later, a paused letter): looked at alias by alias, a poll cost 2.6 µs per
    alias, sending or not, in a write transaction four times a second (5.3 ms with 2,000
    aliases; 1.4 ms now)."""
    with_mail = _lanes_with_mail(session) - skip
    lane_expr = literal(ALIAS_LANE_PREFIX) + cast(Alias.id, String)
    ready = (
        select(Alias.id)
        .where(Alias.id.in_(bindparam("ids", expanding=True)), Alias.needs_reauth.is_(False),
               _ready_exists(lane_expr, Alias.id, now))
        .order_by(Alias.id)
    )  # fmt: skip
    names = alias_lanes_where(session, with_mail, ready)
    if SYSTEM_LANE in with_mail:
        system = session.get(SystemOutgoing, 1)
        configured = system is not None and system.smtp_host and system.from_address
        if configured and session.scalar(select(_ready_exists(literal(SYSTEM_LANE), None, now))):
            names.append(SYSTEM_LANE)
    return names


def _free_count(session: Session, owner: str, now: datetime, names: list[str]) -> int:
    """How many of ``names`` this worker may take now (free, or left by a dead worker, and
    not paused); rows of new lanes are inserted (free)."""
    rows = session.execute(
        select(Lane.name, Lane.owner, Lane.owner_expires_at, Lane.paused_until).where(
            Lane.name.in_(names)
        )
    ).all()
    _insert_lanes(session, sorted(set(names) - {r.name for r in rows}))
    free = len(names) - len(rows)
    for row in rows:
        expired = row.owner_expires_at is not None and row.owner_expires_at < now
        unowned = row.owner is None or row.owner == owner or expired
        if unowned and (row.paused_until is None or row.paused_until <= now):
            free += 1
    return free


# Lanes this worker holds, and lanes held by any live worker (a lease not run out).
_HELD = select(
    func.count().filter(LANE.c.owner == bindparam("owner")),
    func.count().filter(
        or_(LANE.c.owner == bindparam("owner"), LANE.c.owner_expires_at >= bindparam("now"))
    ),
).where(LANE.c.owner.is_not(None))


def _mine_and_share(
    session: Session, owner: str, now: datetime, others: int, free: int
) -> tuple[int, int]:
    """The lanes this worker drives, and its share (rounded up) among itself and ``others``
    live workers of the lanes they drive plus ``free`` ones."""
    mine, held = session.execute(_HELD, {"owner": owner, "now": now}).one()
    return mine, -(-(free + held) // (others + 1))


def _fair_share(session: Session, owner: str, now: datetime, free: int) -> int:
    """How many more lanes this worker takes: its share of the lanes with work (the ``free``
    ones it may take, and those live workers drive) among the live workers, less what it
    drives already; at least one when it drives none. Alone, it takes everything."""
    others = other_live_workers(session, owner, now)
    if others == 0:
        return free
    mine, share = _mine_and_share(session, owner, now, others, free)
    return max(share - mine, 0 if mine else 1)


def excess_lanes(session: Session, owner: str, now: datetime, driving: set[str]) -> int:
    """How many of the lanes this worker drives (``driving``) are beyond its share of the
    lanes live workers drive (0 when alone, or while a lane with work is free: the workers
    below their share take those first): a worker that started late, or that came back,
    would otherwise wait for lanes to be handed back after ``lane_hold_seconds``."""
    others = other_live_workers(session, owner, now)
    if others == 0:
        return 0
    names = _ready_lanes(session, now, driving)
    if names and _free_count(session, owner, now, names) > 0:
        return 0
    mine, share = _mine_and_share(session, owner, now, others, 0)
    return max(mine - share, 0)


def acquire_lanes(
    session: Session, owner: str, now: datetime, cfg: OutboxConfig, *, skip: set[str], limit: int
) -> list[str]:
    """Take ownership of up to ``limit`` lanes that have work and are free, at most this
    worker's fair share among the live workers (``sendas.outbox.presence``); return them.

    Lanes of a dead worker count as free once their lease ran out. A lane another worker
    drives stays with it: a worker that started late gets its share as the others hand
    back their excess (``excess_lanes``), since it takes one whenever it is below its share."""
    if limit <= 0:
        return []
    names = _ready_lanes(session, now, skip)
    if not names:
        return []
    free = _free_count(session, owner, now, names)
    if free == 0:
        return []
    limit = min(limit, _fair_share(session, owner, now, free))
    if limit <= 0:
        return []
    takeable = or_(Lane.owner.is_(None), Lane.owner_expires_at < now, Lane.owner == owner)
    not_paused = or_(Lane.paused_until.is_(None), Lane.paused_until <= now)
    lanes = session.scalars(
        select(Lane)
        .where(Lane.name.in_(names), takeable, not_paused)
        .order_by(Lane.next_send_at.is_not(None), Lane.next_send_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    taken = []
    for lane in lanes:
        if lane.owner is not None and lane.owner != owner:
            # Its holder missed its heartbeats: the reaper (run before this, in the same
            # transaction) made its mid-submission messages unknown.
            takeover_log.info(
                "lane %s taken over from %s, whose lease ran out at %s; now %s",
                lane.name, lane.owner, _iso(lane.owner_expires_at), _iso(now),
            )  # fmt: skip
        lane.owner = owner
        lane.owner_expires_at = now + timedelta(seconds=cfg.lease_seconds)
        # The pause is over, or the owner fixed the alias (acquired only if not needs_reauth).
        lane.paused_until = None
        lane.paused_reason = None
        lane.needs_attention = False
        taken.append(lane.name)
    return taken


def release_lane(session: Session, lane: str, owner: str, next_send_at: datetime | None) -> None:
    """Hand the lane back; ``next_send_at`` (if later) keeps pacing for the next worker."""
    row = session.get(Lane, lane, with_for_update=True)
    if row is None or row.owner != owner:
        return
    row.owner = None
    row.owner_expires_at = None
    if next_send_at is not None and (row.next_send_at is None or next_send_at > row.next_send_at):
        row.next_send_at = next_send_at


def unreserve(session: Session, lane: str, owner: str, next_send_at: datetime | None) -> None:
    """A paced claim ends early (its form letter was paused): drop the slots it reserved,
    keeping only the delay after the last actual start."""
    row = session.get(Lane, lane, with_for_update=True)
    if row is not None and row.owner == owner:
        row.next_send_at = next_send_at


def pause_lane(session: Session, lane: str, until: datetime, reason: str) -> None:
    row = _locked(session, lane)
    if row.paused_until is None or until > row.paused_until:
        row.paused_until = until
    row.paused_reason = reason


def lane_needs_attention(session: Session, lane: str, reason: str, now: datetime) -> None:
    """Authentication was refused: flag the alias and pause its lane until it is fixed.

    The database's own settings have no owner to sign in again: that lane retries after a
    pause instead (an admin fixing the settings is picked up then)."""
    row = _locked(session, lane)
    row.needs_attention = True
    row.paused_reason = reason
    alias_id = lane_alias_id(lane)
    if alias_id is not None:
        alias = session.get(Alias, alias_id)
        if alias is not None:
            alias.needs_reauth = True
            login_refused(session, alias, during="send")
    else:
        row.paused_until = now + timedelta(minutes=5)
        system = session.get(SystemOutgoing, 1)
        if system is not None:
            login_refused(session, system, during="send")


def resume_after_sign_in(session: Session, alias_id: int) -> None:
    """The owner signed the alias in again: its lane stops waiting for them, so the mail
    still queued goes out by itself (a time-limited pause, e.g. a quota, stays)."""
    row = session.get(Lane, alias_lane(alias_id), with_for_update=True)
    if row is not None and row.needs_attention:
        row.needs_attention = False
        row.paused_reason = None
        wake_workers(session)


def hold_lanes(session: Session, lanes: Sequence[str], reason: str) -> None:
    """Stop the lanes until ``release_held``: nothing is claimed from them, nothing is lost
    (a batch a worker claimed before the hold still finishes)."""
    for lane in lanes:
        row = _locked(session, lane)
        row.paused_until = HELD_UNTIL
        row.paused_reason = reason


def release_held(session: Session, lanes: Sequence[str]) -> None:
    """Lift ``hold_lanes``; a time-limited pause (a quota) or needs-attention stays."""
    if lanes:
        session.execute(
            update(Lane)
            .where(Lane.name.in_(list(lanes)), Lane.paused_until == HELD_UNTIL)
            .values(paused_until=None, paused_reason=None)
        )
        wake_workers(session)


_LOCK_LANES = (
    select(LANE.c.name)
    .where(LANE.c.owner == bindparam("owner"), LANE.c.name.in_(bindparam("names", expanding=True)))
    .with_for_update(skip_locked=True)
)
_RENEW_LANES = (
    update(LANE)
    .where(LANE.c.name.in_(bindparam("names", expanding=True)))
    .values(owner_expires_at=bindparam("until"))
)
_LOCK_MESSAGES = (
    select(MSG.c.id)
    .where(
        MSG.c.id.in_(bindparam("ids", expanding=True)),
        MSG.c.lease_owner == bindparam("owner"),
        or_(MSG.c.lease_expires_at.is_(None), MSG.c.lease_expires_at < bindparam("fresh")),
    )
    .with_for_update(skip_locked=True)
)
_RENEW_MESSAGES = (
    update(MSG)
    .where(MSG.c.id.in_(bindparam("ids", expanding=True)))
    .values(lease_expires_at=bindparam("until"))
)
# Lanes another worker owns now. A lane with no owner was handed back by this worker
# after the beat took its snapshot (its driver finished meanwhile): not a takeover.
_TAKEN = select(LANE.c.name).where(
    LANE.c.owner.is_not(None),
    LANE.c.owner != bindparam("owner"),
    LANE.c.name.in_(bindparam("names", expanding=True)),
)


def heartbeat(
    session: Session,
    owner: str,
    lanes: Sequence[str],
    message_ids: Sequence[int],
    until: datetime,
    fresh: datetime | None = None,
) -> set[str]:
    """Renew this worker's claims (its lanes and the messages it holds); return the lanes
    among ``lanes`` that another worker owns now (taken over after missed beats). A message
    whose lease already runs past ``fresh`` (claimed or marked since the last beat) is
    left alone: each renewal rewrites the message's row.

    Runs beside the worker's own write transactions (its heartbeat thread): rows they hold
    locked are skipped, not waited for (no deadlock); they are being renewed or handed back
    by those transactions, and the next beat catches the rest. The statements are built
    once, with expanding parameters: building an ``IN`` of thousands of values costs more
    CPU than running it, and this transaction holds SQLite's write lock meanwhile."""
    names = list(lanes)
    if names:
        renew = list(session.scalars(_LOCK_LANES, {"owner": owner, "names": names}))
        if renew:
            session.execute(_RENEW_LANES, {"names": renew, "until": until})
    ids = list(message_ids)
    for start in range(0, len(ids), 500):
        params = {"ids": ids[start : start + 500], "owner": owner, "fresh": fresh or until}
        got = list(session.scalars(_LOCK_MESSAGES, params))
        if got:
            session.execute(_RENEW_MESSAGES, {"ids": got, "until": until})
    if not names:
        return set()
    return set(session.scalars(_TAKEN, {"owner": owner, "names": names}))


def _iso(at: datetime | None) -> str:
    return at.isoformat() if at is not None else "-"


# --- queries for the services (read only) ----------------------------------------------------


def aliases_needing_attention(session: Session, alias_ids: Sequence[int]) -> set[int]:
    """The aliases among ``alias_ids`` whose lane stopped and waits for the owner."""
    if not alias_ids:
        return set()
    names = [alias_lane(i) for i in alias_ids]
    rows = session.scalars(select(Lane.name).where(Lane.name.in_(names), Lane.needs_attention))
    return {i for i in map(lane_alias_id, rows) if i is not None}


@dataclass(frozen=True)
class LanePause:
    """Why an alias's mail is not going out now: ``until`` is None while it waits for the
    owner (``needs_attention``), else when sending resumes by itself."""

    reason: str | None
    until: datetime | None
    needs_attention: bool


def lane_pause(session: Session, alias_id: int, now: datetime) -> LanePause | None:
    """The alias's lane is stopped (needs attention, or paused until a later time), or None."""
    lane = session.get(Lane, alias_lane(alias_id))
    alias = session.get(Alias, alias_id)
    reason = lane.paused_reason if lane is not None and lane.paused_reason else None
    if (lane is not None and lane.needs_attention) or (alias is not None and alias.needs_reauth):
        return LanePause(reason, None, needs_attention=True)
    if lane is not None and lane.paused_until is not None and lane.paused_until > now:
        return LanePause(reason, lane.paused_until, needs_attention=False)
    return None


def lane_next_send_at(session: Session, alias_id: int) -> datetime | None:
    """The earliest start the alias's pacing allows for its next message (None: no delay
    reserved)."""
    lane = session.get(Lane, alias_lane(alias_id))
    return lane.next_send_at if lane is not None else None
