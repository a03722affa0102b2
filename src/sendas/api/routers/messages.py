"""Messages: /api/messages, and automated mail /api/system/messages (admin).

202 means the message is committed to the outbox; a worker submits it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from sendas.api.deps import ActorDep, AdminDep, CtxDep
from sendas.schemas import MessageDetail, MessageIn, MessageList, MessageOut, SystemMessageIn
from sendas.schemas.fields import MessageId, ObjectId, Offset
from sendas.services import messages as svc
from sendas.services.message_view import message_view
from sendas.services.quotas import Limits

router = APIRouter(tags=["messages"])


@router.post("/messages", status_code=status.HTTP_202_ACCEPTED)
def send_message(ctx: CtxDep, actor: ActorDep, body: MessageIn) -> MessageOut:
    with ctx.db.write() as s:
        message = svc.send_message(s, actor, body, limits=Limits.of(ctx.settings))
    return svc.message_out(message)


@router.get("/messages")
def list_messages(
    ctx: CtxDep,
    actor: ActorDep,
    status_: Annotated[str | None, Query(alias="status")] = None,
    campaign_id: ObjectId | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> MessageList:
    with ctx.db.read() as s:
        rows, total = svc.list_messages(
            s, actor, status=status_, campaign_id=campaign_id, limit=limit, offset=offset
        )
        return MessageList(
            items=[svc.message_out(m) for m in rows], total=total, limit=limit, offset=offset
        )


@router.get("/messages/{message_id}")
def get_message(
    ctx: CtxDep, actor: ActorDep, message_id: MessageId, include_raw: bool = False
) -> MessageDetail:
    with ctx.db.read() as s:
        message = svc.get_message(s, actor, message_id)
        return message_view(s, message, include_raw=include_raw).detail


@router.post("/messages/{message_id}/resend", status_code=status.HTTP_202_ACCEPTED)
def resend(ctx: CtxDep, actor: ActorDep, message_id: MessageId) -> MessageOut:
    with ctx.db.write() as s:
        message = svc.resend(s, actor, message_id)
    return svc.message_out(message)


@router.post("/messages/{message_id}/mark-sent")
def mark_sent(ctx: CtxDep, actor: ActorDep, message_id: MessageId) -> MessageOut:
    with ctx.db.write() as s:
        message = svc.mark_sent(s, actor, message_id)
    return svc.message_out(message)


@router.post("/system/messages", status_code=status.HTTP_202_ACCEPTED)
def send_system_message(ctx: CtxDep, actor: AdminDep, body: SystemMessageIn) -> MessageOut:
    with ctx.db.write() as s:
        message = svc.send_system_message(s, actor, body, limits=Limits.of(ctx.settings))
    return svc.message_out(message)
