"""Claimed messages marked ``sending`` right before their submission (storing the form
letters rendered for them), or given back unsent (:mod:`sendas.outbox.claims` claims them).

Every function takes a :class:`Session` inside a write transaction and counts each status
change (``outbox.counts.Moves``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from sendas.db.models import utcnow
from sendas.outbox.claims import Rendered
from sendas.outbox.completion import complete_campaigns
from sendas.outbox.counts import Moves
from sendas.outbox.tables import (
    CAMPAIGN,
    MSG,
    chunks,
    store_raw,
    unindexed,
    update_ids,
    update_rows,
)
from sendas.statuses import READY, CampaignStatus, MessageStatus


@dataclass(frozen=True)
class MarkRequest:
    """Mark ``ids`` sending (storing the rendered form letters among them first), and
    fail the ones that could not be rendered."""

    owner: str
    ids: list[int]
    now: datetime
    lease_seconds: float
    rendered: dict[int, Rendered] = field(default_factory=dict, repr=False)
    unrenderable: dict[int, str] = field(default_factory=dict)


_Row = tuple[str, int | None]  # a message's status and form letter

# Built once (expanding parameters): a statement built per call is compiled per call.
_CLAIMED = (
    select(MSG.c.id, MSG.c.status, MSG.c.campaign_id)
    .where(
        MSG.c.id.in_(bindparam("ids", expanding=True)),
        MSG.c.lease_owner.in_(bindparam("owners", expanding=True)),
        unindexed(MSG.c.status).in_(READY),
    )
    .with_for_update(of=MSG)
)
_RUNNING = select(CAMPAIGN.c.id).where(
    CAMPAIGN.c.id.in_(bindparam("ids", expanding=True)),
    CAMPAIGN.c.status == CampaignStatus.RUNNING,
)


def _still_ours(session: Session, requests: list[MarkRequest]) -> tuple[dict[int, _Row], set[int]]:
    """The wanted messages still claimed by these owners: (running ones with their status
    and form letter, those of a held form letter). A letter's status is read once, not
    once per message."""
    owners = sorted({r.owner for r in requests})
    wanted = [i for r in requests for i in (*r.ids, *r.unrenderable)]
    found: dict[int, _Row] = {}
    for chunk in chunks(wanted):
        for message_id, status, campaign_id in session.execute(
            _CLAIMED, {"ids": chunk, "owners": owners}
        ):
            found[message_id] = (status, campaign_id)
    letters = sorted({c for _, c in found.values() if c is not None})
    running = {
        cid for chunk in chunks(letters) for (cid,) in session.execute(_RUNNING, {"ids": chunk})
    }
    ours: dict[int, _Row] = {}
    held: set[int] = set()
    for message_id, row in found.items():
        if row[1] is None or row[1] in running:
            ours[message_id] = row
        else:
            held.add(message_id)
    return ours, held


def mark_many(session: Session, requests: list[MarkRequest]) -> list[list[int]]:
    """Mark claimed messages ``sending`` (the callers submit right after the commit), for
    many lanes at once: one SELECT and one UPDATE per 500 messages (and one executemany
    storing the rendered form letters).

    Returns, per request, the ids that are still ours and may go out; a message whose claim
    was lost is left alone, one whose form letter is no longer running is given back.
    """
    ours, held = _still_ours(session, requests)
    # A form letter paused or cancelled since the claim: give its messages back unsent.
    update_ids(session, sorted(held), lease_owner=None, lease_expires_at=None)
    now = max(r.now for r in requests)
    lease = max(r.lease_seconds for r in requests)
    sending = {"status": MessageStatus.SENDING, "updated_at": now,
               "lease_expires_at": now + timedelta(seconds=lease)}  # fmt: skip
    failed = [{"id": i, "status": MessageStatus.FAILED, "error_step": "compose",
               "server_reply": None, "hint": hint, "lease_owner": None,
               "lease_expires_at": None, "updated_at": now}
              for r in requests for i, hint in r.unrenderable.items() if i in ours]  # fmt: skip
    # A rendered form letter: its subject and Message-ID set as it is marked, in the same
    # row write; its bytes go to its body (store_raw), written once.
    rendered = [{"id": i, "subject": x.subject, "message_id": x.message_id, **sending}
                for r in requests for i, x in r.rendered.items() if i in ours]  # fmt: skip
    update_rows(session, failed + rendered)
    store_raw(session, {i: x.packed for r in requests for i, x in r.rendered.items() if i in ours})
    stored = {row["id"] for row in rendered}
    update_ids(session, [i for r in requests for i in r.ids if i in ours and i not in stored],
               **sending)  # fmt: skip
    moves = Moves()
    failed_ids = [i for r in requests for i in r.unrenderable if i in ours]
    for i in failed_ids:
        moves.move(ours[i][1], ours[i][0], MessageStatus.FAILED)
    for r in requests:
        for i in r.ids:
            if i in ours:
                moves.move(ours[i][1], ours[i][0], MessageStatus.SENDING)
    # A form letter whose last message cannot be rendered is done too (rare).
    finished = {ours[i][1] for i in failed_ids}
    moves.apply(session, now)
    complete_campaigns(session, (c for c in finished if c is not None), now)
    return [[i for i in r.ids if i in ours] for r in requests]


def release_messages(
    session: Session, owner: str, ids: Sequence[int], *, was_sending: bool
) -> None:
    """Give back claimed messages that were not submitted (they are claimable again)."""
    if not ids:
        return
    if not was_sending:  # claimed only: the status stays
        session.execute(
            update(MSG)
            .where(MSG.c.id.in_(list(ids)), MSG.c.lease_owner == owner,
                   unindexed(MSG.c.status).in_(READY))
            .values(lease_owner=None, lease_expires_at=None)
        )  # fmt: skip
        return
    moves = Moves()
    for chunk in chunks(ids):
        for (campaign_id,) in session.execute(
            update(MSG)
            .where(MSG.c.id.in_(chunk), MSG.c.lease_owner == owner,
                   unindexed(MSG.c.status) == MessageStatus.SENDING)
            .values(status=MessageStatus.QUEUED, lease_owner=None, lease_expires_at=None)
            .returning(MSG.c.campaign_id)
        ):  # fmt: skip
            moves.move(campaign_id, MessageStatus.SENDING, MessageStatus.QUEUED)
    moves.apply(session, utcnow())
