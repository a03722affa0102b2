"""The history of form letters: a user's letters, newest first, a page at a time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.db.models import Alias, AuditEvent, Campaign
from sendas.errors import FieldProblem, ValidationFailed
from sendas.outbox.counts import read_counts
from sendas.schemas import CampaignPage, CampaignSummary, InvalidLine
from sendas.services.common import Actor
from sendas.statuses import IN_USE, CampaignStatus

MAX_LIMIT = 200


def list_campaigns(
    session: Session,
    actor: Actor,
    *,
    all_users: bool = False,
    before_id: int | None = None,
    limit: int = 50,
) -> CampaignPage:
    """The actor's form letters, newest first (``all_users``: everyone's, for an admin).

    ``before_id`` continues after a page (its ``next_before_id``); ``limit`` is kept within
    1..200. Raises :class:`ValidationFailed` for ``all_users`` asked by a non-admin.
    """
    if all_users and not actor.is_admin:
        raise ValidationFailed(
            [
                FieldProblem(
                    ("query", "all_users"), "only an administrator can list every user's letters"
                )
            ]
        )
    limit = max(1, min(limit, MAX_LIMIT))
    query = (
        select(Campaign, Alias.description, Alias.from_address)
        .join(Alias, Alias.id == Campaign.alias_id)
        .order_by(Campaign.id.desc())
        .limit(limit)
    )
    if not all_users:
        query = query.where(Campaign.user_id == actor.id)
    if before_id is not None:
        query = query.where(Campaign.id < before_id)
    rows = session.execute(query).all()
    counts = _counts(session, [c.id for c, _, _ in rows])
    items = [
        CampaignSummary(
            id=c.id,
            user_id=c.user_id,
            alias_id=c.alias_id,
            alias_description=description,
            from_address=from_address,
            subject=c.subject,
            status=CampaignStatus(c.status),
            paused_reason=c.paused_reason if c.status == CampaignStatus.PAUSED else None,
            total=c.total,
            counts=counts.get(c.id, dict.fromkeys(IN_USE, 0)),
            created_at=c.created_at,
            completed_at=c.completed_at,
        )
        for c, description, from_address in rows
    ]
    return CampaignPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)


def skipped_lines(session: Session, campaign: Campaign) -> tuple[int, list[InvalidLine]]:
    """How many lines were skipped when the letter was queued, and the first ones recorded."""
    detail = session.scalar(
        select(AuditEvent.detail)
        .where(
            AuditEvent.owner_id == campaign.user_id,  # indexed
            AuditEvent.action == "campaign.create",
            AuditEvent.target_type == "campaign",
            AuditEvent.target_id == campaign.id,
        )
        .limit(1)
    )
    if not detail:
        return 0, []
    lines = [InvalidLine.model_validate(d) for d in detail.get("skipped", [])]
    return int(detail.get("invalid", 0)), lines


def _counts(session: Session, campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """Messages by status for each campaign of the page: the counts the outbox keeps."""
    counts: dict[int, dict[str, int]] = {cid: dict.fromkeys(IN_USE, 0) for cid in campaign_ids}
    for campaign_id, kept in read_counts(session, campaign_ids).items():
        for status, n in kept.items():
            if n or status in counts[campaign_id]:
                counts[campaign_id][status] = n
    return counts
