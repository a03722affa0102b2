"""A form letter's progress: totals by status, rate, ETA, why it waits, per-recipient outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import String, and_, cast, exists, func, select, update
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import Alias, Campaign, Lane, Message
from sendas.errors import FieldProblem, NotFound, ValidationFailed
from sendas.schemas import CampaignMessagePage, CampaignOut, MessageOutcome
from sendas.services.common import Actor

MESSAGE_STATUSES = ("queued", "sending", "sent", "retrying", "failed", "unknown", "cancelled")
# Messages that may still go out; a campaign with none left is completed.
ACTIVE = ("queued", "sending", "retrying")
RATE_WINDOW = timedelta(seconds=60)


def get_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    """The actor's campaign (``None``: the local operator, any campaign). Else NotFound."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or (actor is not None and campaign.user_id != actor.id):
        raise NotFound("campaign", campaign_id)
    return campaign


def campaign_status(db: Database, actor: Actor | None, campaign_id: int) -> CampaignOut:
    """Totals by status, rate and ETA; marks the campaign completed when nothing is left."""
    with db.read() as s:
        campaign = get_campaign(s, actor, campaign_id)
        out = _campaign_out(s, campaign)
    if out.status == "running" and not any(out.counts[k] for k in ACTIVE):
        with db.write() as s:
            mark_completed_if_done(s, campaign_id)
            out = _campaign_out(s, get_campaign(s, actor, campaign_id))
    return out


def mark_completed_if_done(session: Session, campaign_id: int) -> bool:
    """Set a running campaign ``completed`` if none of its messages can still go out.

    The outbox may call this after finishing a campaign message. Returns True if changed.
    """
    active = exists().where(Message.campaign_id == campaign_id, Message.status.in_(ACTIVE))
    result = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == "running", ~active)
        .values(status="completed", completed_at=datetime.now(UTC), paused_reason=None)
        .execution_options(synchronize_session=False)
    )
    changed = bool(getattr(result, "rowcount", 0))
    if changed:
        session.expire_all()
    return changed


def campaign_out(session: Session, campaign: Campaign) -> CampaignOut:
    """The campaign as the API shows it, after flushing the caller's pending changes."""
    session.flush()
    return _campaign_out(session, campaign)


def _counts(session: Session, campaign_id: int) -> dict[str, int]:
    counts = dict.fromkeys(MESSAGE_STATUSES, 0)
    for status, n in session.execute(
        select(Message.status, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.status)
    ):
        counts[status] = counts.get(status, 0) + int(n)
    return counts


def _lane_pause(session: Session, alias_id: int, now: datetime) -> str | None:
    lane = session.get(Lane, f"alias:{alias_id}")
    alias = session.get(Alias, alias_id)
    if (lane is not None and lane.needs_attention) or (alias is not None and alias.needs_reauth):
        reason = lane.paused_reason if lane is not None and lane.paused_reason else None
        return reason or "the alias needs attention: its server refused the sign-in"
    if lane is not None and lane.paused_until is not None and lane.paused_until > now:
        until = lane.paused_until.isoformat(timespec="seconds")
        reason = lane.paused_reason or "the server asked to slow down"
        return f"{reason} (resumes at {until})"
    return None


def _campaign_out(session: Session, campaign: Campaign) -> CampaignOut:
    now = datetime.now(UTC)
    counts = _counts(session, campaign.id)
    remaining = sum(counts[k] for k in ACTIVE)
    paused_reason = campaign.paused_reason if campaign.status == "paused" else None
    rate = 0.0
    eta: float | None = None
    if campaign.status in ("running", "paused"):
        if campaign.status == "running":
            paused_reason = _lane_pause(session, campaign.alias_id, now)
        rate = _recent_rate(session, campaign, now)
        waiting = campaign.status != "running" or paused_reason is not None
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
    )


def _recent_rate(session: Session, campaign: Campaign, now: datetime) -> float:
    """Messages sent per second over the last ``RATE_WINDOW`` (or since the start)."""
    window_start = max(now - RATE_WINDOW, campaign.created_at)
    recent = (
        session.scalar(
            select(func.count()).where(
                Message.campaign_id == campaign.id,
                Message.status == "sent",
                Message.sent_at >= window_start,
            )
        )
        or 0
    )
    seconds = max((now - window_start).total_seconds(), 1.0)
    return recent / seconds


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
