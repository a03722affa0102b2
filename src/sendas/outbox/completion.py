"""A form letter becomes ``completed`` in the transaction that settles its last message.

Every path that moves a campaign's message out of :data:`~sendas.statuses.ACTIVE`
(recording an outcome, reaping, failing a render, settling by hand) calls
:func:`complete_campaigns` with the campaigns it touched, so no reader has to write.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, exists, or_, update
from sqlalchemy.orm import Session

from sendas.db.models import Campaign, utcnow
from sendas.outbox.lanes import alias_lane
from sendas.outbox.tables import CAMPAIGN, MSG
from sendas.statuses import ACTIVE, CampaignStatus

# One index seek per active status on (status, lane, ...): a campaign's messages all go
# through its alias's lane, so this stays cheap however many of them were sent already.
# ``campaign_id + 0`` keeps the planner off the campaign_id index, which would walk every
# message the campaign has sent before finding one still waiting.
_ANY_ACTIVE = or_(
    *(
        exists().where(
            MSG.c.status == status,
            MSG.c.lane == bindparam("lane"),
            MSG.c.campaign_id + 0 == bindparam("cid"),
        )
        for status in ACTIVE
    )
)
_COMPLETE = (
    update(CAMPAIGN)
    .where(CAMPAIGN.c.id == bindparam("cid"), CAMPAIGN.c.status == CampaignStatus.RUNNING,
           ~_ANY_ACTIVE)
    .values(status=CampaignStatus.COMPLETED, completed_at=bindparam("now"), paused_reason=None)
)  # fmt: skip


def complete_campaigns(session: Session, touched: Iterable[tuple[int, str]], now: datetime) -> None:
    """Mark ``completed`` each running campaign (id, lane) none of whose messages can still
    go out: one executemany for all of them."""
    params = [{"cid": cid, "lane": lane, "now": now} for cid, lane in set(touched)]
    if params:
        session.execute(_COMPLETE, params)


def complete_if_done(session: Session, campaign: Campaign) -> None:
    """The services changed ``campaign`` or one of its messages (resumed it, settled a
    message by hand): complete it now if nothing is left to send."""
    session.flush()
    complete_campaigns(session, [(campaign.id, alias_lane(campaign.alias_id))], utcnow())
    session.expire(campaign, ["status", "completed_at", "paused_reason"])
