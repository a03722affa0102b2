"""Settling messages by hand: the owner's "send again" and "mark as sent" for a message
whose fate is ``unknown``, and cancelling what an alias still had waiting. The services
check who may do it (and lock the row); the rows change only here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from sendas.db.models import Campaign, Message, utcnow
from sendas.db.wake import wake_workers
from sendas.outbox.completion import complete_if_done
from sendas.outbox.counts import Moves
from sendas.statuses import CANCELLABLE, CampaignStatus, MessageStatus


def send_again(session: Session, message: Message) -> None:
    """Queue ``message`` again (the same bytes, the same Message-ID), reopening its form
    letter if that was completed: the worker only takes messages of running ones."""
    wake_workers(session)
    now = utcnow()
    _moved(session, message, MessageStatus.QUEUED, now)
    message.status = MessageStatus.QUEUED
    message.lease_owner = None
    message.lease_expires_at = None
    message.next_attempt_at = now
    message.attempts = 0
    message.recipient_results = None
    message.server_reply = message.error_step = message.hint = None
    message.updated_at = now
    if message.campaign_id is not None:
        campaign = session.get(Campaign, message.campaign_id)
        if campaign is not None and campaign.status == CampaignStatus.COMPLETED:
            campaign.status = CampaignStatus.RUNNING
            campaign.completed_at = None


def mark_sent(session: Session, message: Message) -> None:
    """The owner says ``message`` did arrive: record it as sent (and complete its form
    letter if this was the last one outstanding)."""
    now = utcnow()
    _moved(session, message, MessageStatus.SENT, now)
    message.status = MessageStatus.SENT
    message.sent_at = now
    message.lease_owner = None
    message.lease_expires_at = None
    message.hint = "Marked as sent by its owner."
    message.updated_at = now
    if message.campaign_id is not None:
        campaign = session.get(Campaign, message.campaign_id)
        if campaign is not None:
            complete_if_done(session, campaign)


def cancel_letter(session: Session, campaign: Campaign) -> None:
    """Cancel a form letter: its messages not handed to a server yet are cancelled (those
    being sent finish), and the letter is ``cancelled``."""
    now = utcnow()
    moves = Moves()
    for status in CANCELLABLE:  # one UPDATE per old status: its row count is the move
        done = session.execute(
            update(Message)
            .where(Message.campaign_id == campaign.id, Message.status == status)
            .values(status=MessageStatus.CANCELLED, updated_at=now, lease_owner=None,
                    lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        moves.move(campaign.id, status, MessageStatus.CANCELLED, _rowcount(done))
    moves.apply(session, now)
    campaign.status = CampaignStatus.CANCELLED
    campaign.paused_reason = None
    campaign.completed_at = now


def cancel_waiting(session: Session, alias_id: int, hint: str) -> None:
    """Cancel the alias's messages not handed to a server yet, saying why in ``hint``."""
    moves = Moves()
    for status in CANCELLABLE:
        for (campaign_id,) in session.execute(
            update(Message)
            .where(Message.alias_id == alias_id, Message.status == status)
            .values(status=MessageStatus.CANCELLED, hint=hint, lease_owner=None,
                    lease_expires_at=None)
            .returning(Message.campaign_id)
            .execution_options(synchronize_session=False)
        ):  # fmt: skip
            moves.move(campaign_id, status, MessageStatus.CANCELLED)
    moves.apply(session, utcnow())


def _moved(session: Session, message: Message, new: str, now: datetime) -> None:
    """Count ``message``'s move to ``new`` (the services locked its row)."""
    moves = Moves()
    moves.move(message.campaign_id, message.status, new)
    moves.apply(session, now)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
