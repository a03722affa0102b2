"""Put composed messages into the outbox: one row per submission, committed by the caller.

The row is the promise: once the caller's transaction commits, the message survives any
crash, and a worker will submit it through its lane.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sendas.compose import Composed, Content, Sender, compose, needs_smtputf8
from sendas.db.models import Message, utcnow
from sendas.outbox.store import SYSTEM_LANE, alias_lane


def compose_for(sender: Sender, content: Content) -> Composed:
    """Compose once at enqueue; ``utf8`` when an address needs it (the server is asked later).

    Raises :class:`~sendas.errors.ValidationFailed` naming the bad field.
    """
    addresses = [sender.from_address, *content.to, *content.cc, *content.bcc]
    if sender.reply_to:
        addresses.append(sender.reply_to)
    return compose(sender, content, utf8=needs_smtputf8(addresses))


def enqueue(
    session: Session,
    composed: Composed,
    content: Content,
    *,
    user_id: int | None,
    alias_id: int | None,
    kind: str = "single",
) -> Message:
    """Insert a ``queued`` message for the alias's lane (or the system lane without alias)."""
    now = utcnow()
    message = Message(
        user_id=user_id,
        alias_id=alias_id,
        lane=alias_lane(alias_id) if alias_id is not None else SYSTEM_LANE,
        kind=kind,
        status="queued",
        envelope_from=composed.envelope_from,
        recipients=list(composed.recipients),
        to_addrs=list(content.to),
        cc_addrs=list(content.cc),
        bcc_addrs=list(content.bcc),
        subject=content.subject,
        message_id=composed.message_id,
        raw=composed.data,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    session.flush()
    return message
