"""Messages: send through an alias or the database settings, look them up, and settle
``unknown`` ones (send again / mark as sent). Shared by the API, the web UI and the CLI.

Every send goes through the outbox: the message is composed here (so the bytes sent, and
the copy in Sent, are fixed once), stored ``queued``, and submitted by a worker.
"""

from __future__ import annotations

import base64

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sendas.compose import Sender
from sendas.db.models import Message
from sendas.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from sendas.outbox import settle
from sendas.outbox.enqueue import compose_for, enqueue
from sendas.schemas import MessageIn, MessageOut, SystemMessageIn
from sendas.schemas.messages import MAX_ATTACHMENT_BYTES
from sendas.services import aliases as alias_service
from sendas.services import system_outgoing as system_service
from sendas.services.common import Actor, audit
from sendas.services.quotas import Limits, check_send_room
from sendas.statuses import READY, MessageStatus

STATUSES: tuple[str, ...] = tuple(MessageStatus)


def message_out(m: Message, *, include_raw: bool = False) -> MessageOut:
    return MessageOut(
        id=m.id, kind=m.kind, status=m.status,
        alias_id=m.alias_id, campaign_id=m.campaign_id, envelope_from=m.envelope_from,
        recipients=list(m.recipients), to=list(m.to_addrs or []), cc=list(m.cc_addrs or []),
        bcc=list(m.bcc_addrs or []), subject=m.subject, message_id=m.message_id,
        attempts=m.attempts,
        next_attempt_at=m.next_attempt_at if m.status in READY else None,
        server_reply=m.server_reply, error_step=m.error_step, hint=m.hint,
        recipient_results=m.recipient_results, sent_copy=m.sent_copy,
        sent_copy_detail=m.sent_copy_detail, created_at=m.created_at, updated_at=m.updated_at,
        sent_at=m.sent_at,
        raw_base64=base64.b64encode(m.raw).decode() if include_raw and m.raw else None,
    )  # fmt: skip


# --- sending -------------------------------------------------------------------------------


def send_message(
    session: Session, actor: Actor, data: MessageIn, *, limits: Limits | None = None
) -> Message:
    """Queue a message through the actor's alias (``alias_id`` omitted: the default alias).

    Raises NotFound for another user's alias, ValidationFailed (nothing written) for bad
    input, RateLimited past the actor's ``limits`` (None: no per-user limit). An alias that
    needs attention still queues: its lane resumes once it is fixed.
    """
    if data.alias_id is not None:
        alias = alias_service.get_alias(session, actor, data.alias_id)
    else:
        found = alias_service.default_alias(session, actor.id)
        if found is None:
            raise ValidationFailed.one("alias_id", "you have no alias yet: create one first")
        alias = found
    if not alias.from_address:
        raise ValidationFailed.one("alias_id", "this alias has no From address")
    check_send_room(session, actor, 1, limits, field="to")
    sender = Sender(alias.alias_name, alias.from_address, alias.reply_to)
    content = data.content(max_attachment_bytes=_attachment_cap(limits))
    composed = compose_for(sender, content)
    return enqueue(session, composed, content, user_id=actor.id, alias_id=alias.id)


def _attachment_cap(limits: Limits | None) -> int:
    return limits.max_attachment_bytes if limits is not None else MAX_ATTACHMENT_BYTES


def send_system_message(
    session: Session, actor: Actor, data: SystemMessageIn, *, limits: Limits | None = None
) -> Message:
    """Queue automated mail through the database's outgoing settings (admin only); it is
    not counted against the admin's own limits, only the attachment total applies."""
    actor.require_admin()
    row = system_service.get_settings_row(session)
    if not system_service.is_configured(row):
        raise Conflict("the database outgoing settings are not configured")
    sender = Sender(row.from_name, row.from_address, row.reply_to)
    content = data.content(max_attachment_bytes=_attachment_cap(limits))
    composed = compose_for(sender, content)
    return enqueue(session, composed, content, user_id=actor.id, alias_id=None, kind="system")


# --- reading -------------------------------------------------------------------------------


def get_message(session: Session, actor: Actor, message_id: int) -> Message:
    message = session.get(Message, message_id)
    if message is None or message.user_id != actor.id:
        raise NotFound("message", message_id)
    return message


def list_messages(
    session: Session,
    actor: Actor,
    *,
    status: str | None = None,
    campaign_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Message], int]:
    """The actor's messages, newest first, and how many match in total."""
    problems = []
    if status is not None and status not in STATUSES:
        problems.append(FieldProblem(("query", "status"), f"must be one of {', '.join(STATUSES)}"))
    if not 1 <= limit <= 500:
        problems.append(FieldProblem(("query", "limit"), "must be between 1 and 500"))
    if offset < 0:
        problems.append(FieldProblem(("query", "offset"), "must not be negative"))
    if problems:
        raise ValidationFailed(problems)
    where = [Message.user_id == actor.id]
    if status is not None:
        where.append(Message.status == status)
    if campaign_id is not None:
        where.append(Message.campaign_id == campaign_id)
    total = session.scalar(select(func.count()).select_from(Message).where(*where)) or 0
    rows = session.scalars(
        select(Message)
        .where(*where)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


# --- settling unknown messages -------------------------------------------------------------


def _unknown_for_update(session: Session, actor: Actor, message_id: int) -> Message:
    message = session.get(Message, message_id, with_for_update=True)
    if message is None or message.user_id != actor.id:
        raise NotFound("message", message_id)
    if message.status != MessageStatus.UNKNOWN:
        raise Conflict(
            f"only a message whose fate is unknown can be settled; this one is {message.status}"
        )
    return message


def resend(session: Session, actor: Actor, message_id: int) -> Message:
    """Send an ``unknown`` message again (the same bytes, the same Message-ID)."""
    message = _unknown_for_update(session, actor, message_id)
    settle.send_again(session, message)
    audit(session, actor, "message.resend", "message", message.id, owner_id=message.user_id)
    return message


def mark_sent(session: Session, actor: Actor, message_id: int) -> Message:
    """The owner says an ``unknown`` message did arrive: record it as sent."""
    message = _unknown_for_update(session, actor, message_id)
    settle.mark_sent(session, message)
    audit(session, actor, "message.mark_sent", "message", message.id, owner_id=message.user_id)
    return message
