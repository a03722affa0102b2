"""Messages: send through an alias or the database settings, look them up, and settle
``unknown`` ones (send again / mark as sent). Shared by the API, the web UI and the CLI.

Every send goes through the outbox: the message is composed here (so the bytes sent, and
the copy in Sent, are fixed once), stored ``queued``, and submitted by a worker.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sendas.compose import Attachment, Content, Sender
from sendas.db.models import Message
from sendas.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from sendas.outbox import settle
from sendas.outbox.enqueue import compose_for, enqueue
from sendas.outbox.statuses import READY, MessageStatus
from sendas.schemas import Email, HeaderText
from sendas.services import aliases as alias_service
from sendas.services import system_outgoing as system_service
from sendas.services.common import Actor, audit

STATUSES: tuple[str, ...] = tuple(MessageStatus)
MAX_RECIPIENTS = 500
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
MAX_BODY = 10 * 1024 * 1024


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: HeaderText = Field(min_length=1)
    content_type: Annotated[str, Field(max_length=200)] = "application/octet-stream"
    content_base64: Annotated[str, Field(max_length=MAX_ATTACHMENT_BYTES * 4 // 3 + 4)]

    @field_validator("content_base64")
    @classmethod
    def _b64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64") from None
        return value

    def decoded(self) -> bytes:
        return base64.b64decode(self.content_base64)


class SystemMessageIn(BaseModel):
    """A message's content; recipients are checked one by one (422 names the field)."""

    model_config = ConfigDict(extra="forbid")

    to: Annotated[list[Email], Field(max_length=MAX_RECIPIENTS)] = []
    cc: Annotated[list[Email], Field(max_length=MAX_RECIPIENTS)] = []
    bcc: Annotated[list[Email], Field(max_length=MAX_RECIPIENTS)] = []
    subject: HeaderText = ""
    text: Annotated[str, Field(max_length=MAX_BODY)] = ""
    html: Annotated[str, Field(max_length=MAX_BODY)] | None = None
    attachments: Annotated[list[AttachmentIn], Field(max_length=100)] = []

    def content(self) -> Content:
        total = sum(len(a.content_base64) * 3 // 4 for a in self.attachments)
        if total > MAX_ATTACHMENT_BYTES:
            raise ValidationFailed.one(
                "attachments", f"attachments add up to more than {MAX_ATTACHMENT_BYTES} bytes"
            )
        if not (self.to or self.cc or self.bcc):
            raise ValidationFailed.one("to", "at least one recipient (to, cc or bcc) is required")
        return Content(
            to=self.to, cc=self.cc, bcc=self.bcc, subject=self.subject, text=self.text,
            html=self.html,
            attachments=[Attachment(a.filename, a.content_type, a.decoded())
                         for a in self.attachments],
        )  # fmt: skip


class MessageIn(SystemMessageIn):
    alias_id: int | None = None


class MessageOut(BaseModel):
    id: int
    kind: str
    status: MessageStatus
    alias_id: int | None
    campaign_id: int | None
    envelope_from: str
    recipients: list[str]
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    message_id: str
    attempts: int
    next_attempt_at: datetime | None
    server_reply: str | None
    error_step: str | None
    hint: str | None
    recipient_results: dict[str, Any] | None
    sent_copy: str | None
    sent_copy_detail: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    raw_base64: str | None = None


class MessagePage(BaseModel):
    items: list[MessageOut]
    total: int
    limit: int
    offset: int


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


def send_message(session: Session, actor: Actor, data: MessageIn) -> Message:
    """Queue a message through the actor's alias (``alias_id`` omitted: the default alias).

    Raises NotFound for another user's alias, ValidationFailed (nothing written) for bad
    input. An alias that needs attention still queues: its lane resumes once it is fixed.
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
    sender = Sender(alias.alias_name, alias.from_address, alias.reply_to)
    content = data.content()
    composed = compose_for(sender, content)
    return enqueue(session, composed, content, user_id=actor.id, alias_id=alias.id)


def send_system_message(session: Session, actor: Actor, data: SystemMessageIn) -> Message:
    """Queue automated mail through the database's outgoing settings (admin only)."""
    actor.require_admin()
    row = system_service.get_settings_row(session)
    if not system_service.is_configured(row):
        raise Conflict("the database outgoing settings are not configured")
    sender = Sender(row.from_name, row.from_address, row.reply_to)
    content = data.content()
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
