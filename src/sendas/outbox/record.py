"""Recording what happened: the server's answers per message (``sent`` | ``retrying`` |
``failed`` | ``unknown``), the lane's pause or the alias's flag they call for, the copy to
Sent, and messages caught mid-submission by a worker that died. A form letter whose last
message is settled here is completed in the same transaction.

A ``sending`` row whose lease ran out belonged to a worker that died mid-submission: it
becomes ``unknown`` and is never resent by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from sendas.db.models import Message
from sendas.errors import TransportError
from sendas.outbox.claims import ClaimedMessage
from sendas.outbox.completion import complete_campaigns
from sendas.outbox.config import OutboxConfig
from sendas.outbox.counts import Moves
from sendas.outbox.lanes import lane_needs_attention, pause_lane
from sendas.outbox.outcomes import LaneAction, Outcome, interpret
from sendas.outbox.tables import MSG, chunks, update_rows
from sendas.smtp import SubmitResult
from sendas.statuses import ACTIVE, MessageStatus

log = logging.getLogger("sendas.outbox")

SETTLED = (MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.UNKNOWN)


@dataclass
class Recorded:
    """What the worker must do after outcomes were stored."""

    sent: list[int] = field(default_factory=list)
    pause_until: datetime | None = None
    needs_attention: bool = False
    reconnect: bool = False


@dataclass(frozen=True)
class RecordRequest:
    owner: str
    lane: str
    items: Sequence[tuple[ClaimedMessage, SubmitResult | TransportError]]
    now: datetime
    cfg: OutboxConfig
    copy_skip_reason: str | None


@dataclass(frozen=True)
class _Held:
    """What recording needs of a message row: who holds it, in which state, for which
    form letter."""

    lease_owner: str | None
    status: str
    campaign_id: int | None


_HELD_ROWS = (
    select(MSG.c.id, MSG.c.lease_owner, MSG.c.status, MSG.c.campaign_id)
    .where(MSG.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update()
)


def record_many(session: Session, requests: list[RecordRequest]) -> list[Recorded]:
    """Store the outcomes of many lanes at once: the rows are read (locked) in one query
    per 500 and written by one executemany per set of columns changed; the form letters
    finished by them are completed by one more."""
    ids = [c.id for r in requests for c, _ in r.items]
    held: dict[int, _Held] = {}
    for chunk in chunks(ids):
        held.update(
            (i, _Held(owner, status, campaign_id))
            for i, owner, status, campaign_id in session.execute(_HELD_ROWS, {"ids": chunk})
        )
    updates: list[dict[str, Any]] = []
    done = [record_outcomes(session, r, held, updates) for r in requests]
    update_rows(session, updates)
    moves = Moves()
    finished: set[int] = set()
    for row in updates:
        was = held[row["id"]]
        moves.move(was.campaign_id, was.status, row["status"])
        if was.campaign_id is not None and row["status"] not in ACTIVE:
            finished.add(was.campaign_id)
    now = max(r.now for r in requests)
    moves.apply(session, now)
    complete_campaigns(session, finished, now)
    return done


def _row_values(request: RecordRequest, claimed: ClaimedMessage, out: Outcome) -> dict[str, Any]:
    """The message row's new columns for ``out``."""
    now = request.now
    values: dict[str, Any] = {
        "id": claimed.id, "status": out.status, "recipient_results": out.recipient_results,
        "server_reply": out.server_reply, "error_step": out.error_step, "hint": out.hint,
        "updated_at": now,
    }  # fmt: skip
    # A temporary failure counts toward the retry budget; the submission that settles the
    # message counts too, so "attempts" is every submission the server decided. Pauses
    # (quota, sign-in refused) are not counted: they must never use up the budget.
    if out.count_attempt or out.status in SETTLED:
        values["attempts"] = claimed.attempts + 1
    if out.next_attempt_at is not None:
        values["next_attempt_at"] = out.next_attempt_at
    if out.status != MessageStatus.UNKNOWN:
        values["lease_owner"] = values["lease_expires_at"] = None
    if out.status == MessageStatus.SENT:
        values["sent_at"] = now
        if request.copy_skip_reason is not None:
            values["sent_copy"] = "skipped"
            values["sent_copy_detail"] = request.copy_skip_reason
    return values


@dataclass
class _LaneVerdict:
    """What the answers of one lane's batch say about the lane, taken together."""

    pause_until: datetime | None = None
    pause_reason: str | None = None
    attention: str | None = None
    reconnect: bool = False

    def add(self, action: LaneAction) -> None:
        until = action.pause_until
        if until is not None and (self.pause_until is None or until > self.pause_until):
            self.pause_until, self.pause_reason = until, action.pause_reason
        if action.needs_attention:
            self.attention = action.needs_attention
        self.reconnect = self.reconnect or action.reconnect


def record_outcomes(
    session: Session, request: RecordRequest, held: dict[int, _Held], updates: list[dict[str, Any]]
) -> Recorded:
    """Interpret one lane's answers into ``updates`` (rows by primary key); pause the lane
    or flag the alias when the server says so."""
    owner, now, cfg = request.owner, request.now, request.cfg
    done = Recorded()
    verdict = _LaneVerdict()
    for claimed, answer in request.items:
        row = held.get(claimed.id)
        mid_send = (MessageStatus.SENDING, MessageStatus.UNKNOWN)
        if row is None or row.lease_owner != owner or row.status not in mid_send:
            continue  # someone else decided meanwhile (e.g. the owner chose send again)
        out: Outcome = interpret(
            answer, recipients=claimed.recipients, previous=claimed.recipient_results,
            attempts=claimed.attempts, now=now, max_attempts=cfg.max_attempts,
            backoff_base=cfg.backoff_base, backoff_max=cfg.backoff_max,
        )  # fmt: skip
        updates.append(_row_values(request, claimed, out))
        if out.status == MessageStatus.SENT:
            done.sent.append(claimed.id)
        verdict.add(out.lane)
    done.pause_until, done.reconnect = verdict.pause_until, verdict.reconnect
    if verdict.attention is not None:
        lane_needs_attention(session, request.lane, verdict.attention, now)
        done.needs_attention = True
    if done.pause_until is not None:
        reason = verdict.pause_reason or "the server asked to wait"
        pause_lane(session, request.lane, done.pause_until, reason)
    return done


def record_sent_copy(session: Session, message_id: int, status: str, detail: str) -> None:
    session.execute(
        update(Message)
        .where(Message.id == message_id)
        .values(sent_copy=status, sent_copy_detail=detail[:2000])
    )


REAPED_HINT = (
    "The worker stopped while this message was being submitted, so the server may have "
    "accepted it. Check the recipient's mailbox or your Sent folder, then choose 'send again' "
    "or 'mark as sent'."
)


def reap_expired(session: Session, now: datetime, owner: str | None = None) -> int:
    """Messages caught mid-submission by a worker that died become ``unknown``.

    ``owner``'s own messages are never reaped by itself: a live worker whose heartbeat was
    held up (a long write lock on SQLite) still records their outcomes."""
    expired = [Message.status == MessageStatus.SENDING, Message.lease_expires_at < now]
    if owner is not None:
        expired.append(Message.lease_owner.is_distinct_from(owner))
    rows = session.scalars(
        select(Message).where(*expired).limit(1000).with_for_update(skip_locked=True)
    ).all()
    moves = Moves()
    for m in rows:
        moves.move(m.campaign_id, m.status, MessageStatus.UNKNOWN)
        m.status = MessageStatus.UNKNOWN
        m.attempts += 1  # the submission the worker was making
        m.error_step = m.error_step or "data"
        m.server_reply = m.server_reply or "no answer recorded: the worker stopped"
        m.hint = REAPED_HINT
    if rows:
        log.warning("%d message(s) caught mid-submission became unknown", len(rows))
        session.flush()
        moves.apply(session, now)
        complete_campaigns(session, moves.campaigns(), now)
    return len(rows)
