"""The Core handles and statements the outbox's hot paths share.

The claim, mark and record paths run for every batch of every lane: they use Core
statements on the tables, built once with parameters, which cost a fraction of the ORM's
statement handling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, exists, or_, update
from sqlalchemy.orm import Session

from sendas.db.models import Campaign, Lane, Message, MessageBody
from sendas.statuses import CampaignStatus

MSG: Table = Message.metadata.tables[Message.__tablename__]
CAMPAIGN: Table = Campaign.metadata.tables[Campaign.__tablename__]
LANE: Table = Lane.metadata.tables[Lane.__tablename__]
BODY: Table = MessageBody.metadata.tables[MessageBody.__tablename__]
_BY_ID = update(MSG).where(MSG.c.id == bindparam("_id"))  # SET: the other keys
_BY_IDS = update(MSG).where(MSG.c.id.in_(bindparam("ids", expanding=True)))

CHUNK = 500


def chunks(ids: Sequence[int]) -> list[list[int]]:
    return [list(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK)]


def update_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE messages by ``id``: one executemany per set of columns changed."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    for group in groups.values():
        session.execute(
            _BY_ID, [{("_id" if k == "id" else k): v for k, v in row.items()} for row in group]
        )


def update_ids(session: Session, ids: Sequence[int], **values: Any) -> None:
    """UPDATE messages SET ``values`` WHERE id IN ``ids`` (500 at a time)."""
    for chunk in chunks(ids):
        session.execute(_BY_IDS, {"ids": chunk, **values})


_BODY_RAW = update(BODY).where(BODY.c.message_id == bindparam("_id"))


def store_raw(session: Session, raw: dict[int, bytes]) -> None:
    """Write rendered form letters' bytes into their bodies (one executemany), the one
    write of ``raw`` a form letter's message gets; the status row stays narrow."""
    if raw:
        session.execute(_BODY_RAW, [{"_id": i, "raw": data} for i, data in raw.items()])


def unindexed(column: Any) -> Any:
    """``column`` as an expression no index can answer (``column || ''``, or ``column +
    0`` for a number). A statement that looks messages up by id (or Message-ID) and also
    checks their status must find them by that key: SQLite otherwise plans on
    ``ix_messages_claim`` (status first) and reads every queued message for each
    statement (0.5 ms for 32 ids among 5,000 queued; a second at a million), or on
    ``ix_messages_user_status`` and reads a user's whole history. PostgreSQL plans on
    the key either way."""
    if column.type.python_type is int:
        return column + 0
    return column.concat("")


def running_campaign() -> Any:
    """The message is not part of a form letter, or its form letter is running (Core)."""
    return or_(
        MSG.c.campaign_id.is_(None),
        exists().where(
            CAMPAIGN.c.id == MSG.c.campaign_id, CAMPAIGN.c.status == CampaignStatus.RUNNING
        ),
    )
