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
from sendas.outbox.counts import COUNTS
from sendas.outbox.tables import CAMPAIGN
from sendas.statuses import ACTIVE, CampaignStatus

# The kept counts (sendas.outbox.counts) say whether any message may still go out: the
# callers apply their moves before completing. The statuses are plain comparisons, not
# IN: an IN list is an "expanding" parameter, which an executemany (several campaigns)
# refuses - and a failed group commit is run again one operation per commit.
_ANY_ACTIVE = exists().where(
    COUNTS.c.campaign_id == bindparam("cid"),
    or_(*(COUNTS.c.status == status for status in ACTIVE)),
    COUNTS.c.n > 0,
)
_COMPLETE = (
    update(CAMPAIGN)
    .where(CAMPAIGN.c.id == bindparam("cid"), CAMPAIGN.c.status == CampaignStatus.RUNNING,
           ~_ANY_ACTIVE)
    .values(status=CampaignStatus.COMPLETED, completed_at=bindparam("now"), paused_reason=None)
)  # fmt: skip


def complete_campaigns(session: Session, campaign_ids: Iterable[int], now: datetime) -> None:
    """Mark ``completed`` each running campaign none of whose messages can still go out:
    one executemany for all of them (in id order)."""
    params = [{"cid": cid, "now": now} for cid in sorted(set(campaign_ids))]
    if params:
        session.execute(_COMPLETE, params)


def complete_if_done(session: Session, campaign: Campaign) -> None:
    """The services changed ``campaign`` or one of its messages (resumed it, settled a
    message by hand): complete it now if nothing is left to send."""
    session.flush()
    complete_campaigns(session, [campaign.id], utcnow())
    session.expire(campaign, ["status", "completed_at", "paused_reason"])
