"""Form letters whose render ran out of time at send time: retried later, not failed.

Every recipient of a form letter was rendered within the limits when it was enqueued
(:mod:`sendas.services.campaigns.check`), so a render that runs past its time limit in the
worker says the machine is busy, not that the template is bad. Such a message goes back
to ``retrying`` with backoff, the render counted as an attempt, and fails (with the reason)
only once ``max_attempts`` are used up. A real template error still fails at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.outbox.completion import complete_campaigns
from sendas.outbox.config import OutboxConfig
from sendas.outbox.counts import Moves
from sendas.outbox.outcomes import backoff
from sendas.outbox.tables import MSG, chunks, unindexed, update_rows
from sendas.statuses import READY, MessageStatus

RETRY_HINT = "The worker was too busy to render this form letter in time; it tries again."


class RenderLate(str):
    """Why a render ran out of time: a render result that is retried, not failed (a ``str``
    like the permanent reasons, so it travels back from a render process the same way)."""

    __slots__ = ()


def defer_late(
    session: Session, owner: str, late: dict[int, str], now: datetime, cfg: OutboxConfig
) -> list[int]:
    """Retry (or, past ``cfg.max_attempts``, fail) the ``late`` messages (id: reason) still
    claimed by ``owner``; return the ids that failed for good. Rows no longer ours are left
    alone, so a transaction run again after a lost commit changes nothing."""
    c = MSG.c
    updates: list[dict[str, Any]] = []
    moves = Moves()
    finished: set[int] = set()
    for chunk in chunks(sorted(late)):
        for message_id, status, attempts, campaign_id in session.execute(
            select(c.id, c.status, c.attempts, c.campaign_id)
            .where(c.id.in_(chunk), c.lease_owner == owner, unindexed(c.status).in_(READY))
            .with_for_update(of=MSG)
        ):  # fmt: skip
            tries = attempts + 1
            reason = late[message_id]
            row: dict[str, Any] = {
                "id": message_id, "attempts": tries, "error_step": "compose",
                "server_reply": None, "lease_owner": None, "lease_expires_at": None,
                "updated_at": now,
            }  # fmt: skip
            if tries >= cfg.max_attempts:
                row |= {"status": MessageStatus.FAILED, "hint": reason}
                if campaign_id is not None:
                    finished.add(campaign_id)
            else:
                wait = backoff(tries, cfg.backoff_base, cfg.backoff_max)
                row |= {"status": MessageStatus.RETRYING, "hint": f"{reason} - {RETRY_HINT}",
                        "next_attempt_at": now + timedelta(seconds=wait)}  # fmt: skip
            moves.move(campaign_id, status, row["status"])
            updates.append(row)
    update_rows(session, updates)
    moves.apply(session, now)
    complete_campaigns(session, finished, now)
    return [row["id"] for row in updates if row["status"] == MessageStatus.FAILED]
