"""Pausing, resuming and cancelling a form letter: status changes in the database.

The outbox claims a campaign's messages only while the campaign is ``running``; messages
already handed to a server finish whatever happens here.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.db.models import Campaign
from sendas.db.wake import wake_workers
from sendas.errors import Conflict, NotFound
from sendas.outbox import settle
from sendas.outbox.completion import complete_if_done
from sendas.services.common import Actor, audit
from sendas.statuses import CampaignStatus

PAUSED_BY_OWNER = "paused by its owner"


def pause_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    """Stop claiming this campaign's messages; those already being sent finish."""
    campaign = _lock(session, actor, campaign_id)
    if campaign.status == CampaignStatus.PAUSED:
        return campaign
    if campaign.status != CampaignStatus.RUNNING:
        raise Conflict(f"the campaign is {campaign.status}: it cannot be paused")
    campaign.status = CampaignStatus.PAUSED
    campaign.paused_reason = PAUSED_BY_OWNER
    _audit(session, actor, campaign, "campaign.pause")
    return campaign


def resume_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    campaign = _lock(session, actor, campaign_id)
    if campaign.status == CampaignStatus.RUNNING:
        return campaign
    if campaign.status != CampaignStatus.PAUSED:
        raise Conflict(f"the campaign is {campaign.status}: it cannot be resumed")
    campaign.status = CampaignStatus.RUNNING
    campaign.paused_reason = None
    _audit(session, actor, campaign, "campaign.resume")
    wake_workers(session)
    complete_if_done(session, campaign)  # its last messages may have settled while paused
    return campaign


def cancel_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    """Cancel every message not yet handed to a server; messages being sent finish."""
    campaign = _lock(session, actor, campaign_id)
    if campaign.status == CampaignStatus.CANCELLED:
        return campaign
    if campaign.status == CampaignStatus.COMPLETED:
        raise Conflict("the campaign is completed: there is nothing left to cancel")
    settle.cancel_letter(session, campaign)
    _audit(session, actor, campaign, "campaign.cancel")
    return campaign


def _lock(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    campaign = session.scalar(select(Campaign).where(Campaign.id == campaign_id).with_for_update())
    if campaign is None or (actor is not None and campaign.user_id != actor.id):
        raise NotFound("campaign", campaign_id)
    return campaign


def _audit(session: Session, actor: Actor | None, campaign: Campaign, action: str) -> None:
    audit(session, actor, action, "campaign", campaign.id, owner_id=campaign.user_id)
