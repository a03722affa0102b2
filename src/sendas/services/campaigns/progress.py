"""A form letter's progress: totals by status, rate, ETA, why it waits, per-recipient outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import String, and_, cast, select
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import Campaign, Message
from sendas.errors import FieldProblem, NotFound, ValidationFailed
from sendas.outbox.counts import read_counts, sent_rate
from sendas.outbox.lanes import lane_pause
from sendas.schemas import CampaignMessagePage, CampaignOut, MessageOutcome
from sendas.services.common import Actor
from sendas.statuses import ACTIVE, IN_USE, CampaignStatus

MESSAGE_STATUSES: tuple[str, ...] = IN_USE
RATE_WINDOW = timedelta(seconds=60)


def get_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    """The actor's campaign (``None``: the local operator, any campaign). Else NotFound."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or (actor is not None and campaign.user_id != actor.id):
        raise NotFound("campaign", campaign_id)
    return campaign


def campaign_status(db: Database, actor: Actor | None, campaign_id: int) -> CampaignOut:
    """Totals by status, rate and ETA (the outbox marks a finished campaign completed)."""
    with db.read() as s:
        return _campaign_out(s, get_campaign(s, actor, campaign_id))


def campaign_out(session: Session, campaign: Campaign) -> CampaignOut:
    """The campaign as the API shows it, after flushing the caller's pending changes."""
    session.flush()
    return _campaign_out(session, campaign)


def _counts(session: Session, campaign_id: int) -> dict[str, int]:
    """The counts the outbox keeps (a few rows, whatever the letter's size)."""
    counts = dict.fromkeys(MESSAGE_STATUSES, 0)
    for status, n in read_counts(session, [campaign_id])[campaign_id].items():
        if n or status in counts:
            counts[status] = n
    return counts


def _lane_pause(session: Session, alias_id: int, now: datetime) -> str | None:
    pause = lane_pause(session, alias_id, now)
    if pause is None:
        return None
    if pause.until is None:
        return pause.reason or "the alias needs attention: its server refused the sign-in"
    until = pause.until.isoformat(timespec="seconds")
    return f"{pause.reason or 'the server asked to slow down'} (resumes at {until})"


def _campaign_out(session: Session, campaign: Campaign) -> CampaignOut:
    now = datetime.now(UTC)
    counts = _counts(session, campaign.id)
    skips = campaign.suppressed_skips or {}
    remaining = sum(counts[k] for k in ACTIVE)
    paused_reason = campaign.paused_reason if campaign.status == CampaignStatus.PAUSED else None
    rate = 0.0
    eta: float | None = None
    if campaign.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
        if campaign.status == CampaignStatus.RUNNING:
            paused_reason = _lane_pause(session, campaign.alias_id, now)
        rate = _recent_rate(session, campaign, now)
        waiting = campaign.status != CampaignStatus.RUNNING or paused_reason is not None
        eta = _eta(remaining, rate, waiting=waiting)
    return CampaignOut(
        id=campaign.id,
        alias_id=campaign.alias_id,
        subject=campaign.subject,
        status=campaign.status,
        paused_reason=paused_reason,
        total=campaign.total,
        counts=counts,
        rate=round(rate, 3),
        eta_seconds=None if eta is None else round(eta, 1),
        created_at=campaign.created_at,
        completed_at=campaign.completed_at,
        skipped_suppressed=skips.get("count", 0),
        skipped_addresses=skips.get("addresses", []),
    )


def _recent_rate(session: Session, campaign: Campaign, now: datetime) -> float:
    """Messages sent per second lately: over the last 30 to 60 seconds (the marks the
    outbox keeps on the letter's ``sent`` count), or since the start."""
    return sent_rate(session, campaign.id, now, campaign.created_at)


def _eta(remaining: int, rate: float, *, waiting: bool) -> float | None:
    """Seconds left at the current rate; None while paused or with nothing sent lately."""
    if remaining == 0:
        return 0.0
    if rate > 0 and not waiting:
        return remaining / rate
    return None


# --- per-recipient outcomes --------------------------------------------------------------------


def list_messages(
    session: Session,
    actor: Actor | None,
    campaign_id: int,
    *,
    status: str | None = None,
    q: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> CampaignMessagePage:
    """One campaign's recipients and their outcomes, by id; ``q`` searches the address."""
    get_campaign(session, actor, campaign_id)
    if status is not None and status not in MESSAGE_STATUSES:
        raise ValidationFailed(
            [FieldProblem(("query", "status"), f"must be one of {', '.join(MESSAGE_STATUSES)}")]
        )
    limit = max(1, min(limit, 1000))
    conditions = [Message.campaign_id == campaign_id]
    if status:
        conditions.append(Message.status == status)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(cast(Message.to_addrs, String).ilike(pattern, escape="\\"))
    if after_id is not None:
        conditions.append(Message.id > after_id)
    rows = list(
        session.scalars(select(Message).where(and_(*conditions)).order_by(Message.id).limit(limit))
    )
    items = [_outcome(m) for m in rows]
    return CampaignMessagePage(
        items=items, next_after_id=rows[-1].id if len(rows) == limit else None
    )


def _outcome(m: Message) -> MessageOutcome:
    return MessageOutcome(
        id=m.id,
        email=(m.to_addrs or m.recipients or [""])[0],
        status=m.status,
        attempts=m.attempts,
        server_reply=m.server_reply,
        hint=m.hint,
        error_step=m.error_step,
        sent_at=m.sent_at,
        updated_at=m.updated_at,
    )
