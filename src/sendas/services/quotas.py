"""Per-user limits on volume: Test Connection runs per minute, messages queued per hour and
messages waiting at once.

The counts live in the database (``rate_events``, and the message rows themselves), so
every ``sendas serve`` process sharing a PostgreSQL database enforces one limit, not one
each. Checks run in a write transaction after locking the user's row, so two requests of
one user cannot both pass on the same count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from sendas.config import Settings
from sendas.db.engine import Database
from sendas.db.models import Message, RateEvent, User, utcnow
from sendas.errors import RateLimited, ValidationFailed
from sendas.services.common import Actor
from sendas.statuses import MessageStatus

TEST_KIND = "connection_test"
TEST_WINDOW = timedelta(minutes=1)
SEND_WINDOW = timedelta(hours=1)
# Mail waiting drains at the pace of the user's servers: no exact time to offer.
QUEUE_RETRY_AFTER = 60
WAITING = (MessageStatus.QUEUED, MessageStatus.RETRYING, MessageStatus.SENDING)


@dataclass(frozen=True)
class Limits:
    """The per-user limits in force (0 switches a count off), and the attachment total."""

    tests_per_minute: int
    messages_per_hour: int
    max_queued_messages: int
    max_attachment_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.tests_per_minute,
            settings.messages_per_hour,
            settings.max_queued_messages,
            settings.max_attachment_bytes,
        )


def _lock_user(session: Session, user_id: int) -> None:
    """Serialise one user's limited actions (a row lock on PostgreSQL; SQLite writes are
    serial already)."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update())


def _wait(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


# --- Test Connection ------------------------------------------------------------------------


def take_test(db: Database, actor: Actor, limits: Limits) -> None:
    """Count one Test Connection for ``actor``.

    Raises :class:`RateLimited` (nothing counted) when ``tests_per_minute`` runs were
    started in the last minute. The command line's operator is not limited.
    """
    if actor.is_operator or limits.tests_per_minute <= 0:
        return
    now = utcnow()
    since = now - TEST_WINDOW
    mine = (RateEvent.user_id == actor.id, RateEvent.kind == TEST_KIND)
    with db.write() as s:
        _lock_user(s, actor.id)
        s.execute(delete(RateEvent).where(*mine, RateEvent.at <= since))
        recent = s.scalars(
            select(RateEvent.at)
            .where(*mine)
            .order_by(RateEvent.at.desc())
            # Only the runs that decide the answer are read.
            .limit(limits.tests_per_minute)
        ).all()
        if len(recent) >= limits.tests_per_minute:
            raise RateLimited(
                f"at most {limits.tests_per_minute} connection tests per minute "
                "(SENDAS_TESTS_PER_MINUTE); wait a moment and test again",
                setting="SENDAS_TESTS_PER_MINUTE",
                retry_after=_wait(recent[-1] + TEST_WINDOW, now),
            )
        s.add(RateEvent(user_id=actor.id, kind=TEST_KIND, at=now))


# --- queueing mail --------------------------------------------------------------------------


def check_send_room(
    session: Session, actor: Actor, count: int, limits: Limits | None, *, field: str
) -> None:
    """Refuse ``count`` new messages of ``actor`` that would pass a limit; call it in the
    write transaction that inserts them (nothing is written when it raises).

    Raises :class:`ValidationFailed` naming ``field`` when ``count`` alone is over a limit
    (waiting cannot help), :class:`RateLimited` when it fits later. Automated mail of the
    database settings is not counted. ``limits`` None: no limit (benchmarks, tools).
    """
    if limits is None or actor.is_operator:
        return
    check_letter_size(count, limits, field)
    _lock_user(session, actor.id)
    own = (Message.user_id == actor.id, Message.kind != "system")
    if limits.messages_per_hour > 0:
        _check_hourly(session, own, count, limits.messages_per_hour)
    if limits.max_queued_messages > 0:
        waiting = session.scalar(
            select(func.count()).select_from(Message).where(*own, Message.status.in_(WAITING))
        )
        if (waiting or 0) + count > limits.max_queued_messages:
            raise RateLimited(
                f"you have {waiting:,} messages waiting to go out; {count:,} more would pass "
                f"the limit of {limits.max_queued_messages:,} waiting at once "
                "(SENDAS_MAX_QUEUED_MESSAGES). Try again once some have been sent.",
                setting="SENDAS_MAX_QUEUED_MESSAGES",
                retry_after=QUEUE_RETRY_AFTER,
            )


def check_letter_size(count: int, limits: Limits, field: str) -> None:
    """Refuse a letter of ``count`` messages that no wait would let through (checked while the
    list is read, so a list over a limit is not rendered first)."""
    for limit, setting, what in (
        (limits.messages_per_hour, "SENDAS_MESSAGES_PER_HOUR", "per hour"),
        (limits.max_queued_messages, "SENDAS_MAX_QUEUED_MESSAGES", "waiting at once"),
    ):
        if 0 < limit < count:
            raise ValidationFailed.one(
                field,
                f"{count:,} messages are more than the {limit:,} a user may queue {what} "
                f"({setting}); split the list",
                "too_many_messages",
            )


def _check_hourly(
    session: Session, own: tuple[ColumnElement[bool], ...], count: int, limit: int
) -> None:
    now = utcnow()
    in_window = (*own, Message.created_at > now - SEND_WINDOW)
    recent = session.scalar(select(func.count()).select_from(Message).where(*in_window)) or 0
    excess = recent + count - limit
    if excess <= 0:
        return
    # Room comes back as the oldest rows of the window age out: the excess-th oldest one.
    freed_at = session.scalar(
        select(Message.created_at)
        .where(*in_window)
        .order_by(Message.created_at)
        .offset(excess - 1)
        .limit(1)
    )
    raise RateLimited(
        f"you have queued {recent:,} messages in the last hour; {count:,} more would pass the "
        f"limit of {limit:,} per hour (SENDAS_MESSAGES_PER_HOUR)",
        setting="SENDAS_MESSAGES_PER_HOUR",
        retry_after=_wait((freed_at or now) + SEND_WINDOW, now),
    )
