"""Compose, one message's status (resend, mark sent) and the Sent log."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from sendas.errors import Conflict, NotFound, RateLimited, ValidationFailed
from sendas.schemas import AliasOut, MessageIn
from sendas.schemas.fields import MessageId, Offset, PageNo, form_id
from sendas.services import aliases as alias_svc
from sendas.services import messages as message_svc
from sendas.services.common import Actor
from sendas.services.message_view import MessageView, attachment, message_view
from sendas.services.quotas import Limits
from sendas.statuses import ACTIVE, IN_USE
from sendas.units import byte_size
from sendas.web.deps import Form, PageNotFound, WebActor, WebCtx, raw_text, text
from sendas.web.render import (
    field_errors,
    flash,
    form_errors,
    is_htmx,
    page,
    redirect,
    refused_status,
)

router = APIRouter()

# The filters offered.
STATUSES = IN_USE
COMPOSE_FIELDS = ("alias_id", "to", "cc", "bcc", "subject", "text", "html", "attachments")
READ_CHUNK = 64 * 1024


def alias_choices(ctx: WebCtx, actor: Actor) -> list[AliasOut]:
    """The actor's aliases for a From menu (compose and form letters)."""
    with ctx.db.read() as s:
        return [alias_svc.alias_out(a) for a in alias_svc.list_aliases(s, actor)]


def _addresses(value: str) -> list[str]:
    """Addresses separated by commas, semicolons or new lines."""
    return [a.strip() for a in re.split(r"[,;\n]", value) if a.strip()]


# --- compose ------------------------------------------------------------------------------


@router.get("/compose")
def compose_page(request: Request, ctx: WebCtx, actor: WebActor) -> Response:
    aliases = alias_choices(ctx, actor)
    default = next((a.id for a in aliases if a.is_default), None)
    return page(
        request,
        "mail/compose.html",
        {
            "aliases": aliases,
            "v": {"alias_id": default},
            "errors": {},
            "attachments_cap": ctx.settings.max_attachment_bytes,
        },
    )


async def _attachments(form: FormData, cap: int) -> list[dict[str, str]]:
    """The uploaded files, base64 for ``MessageIn``. Their total is counted while they are
    read, and reading stops at the first chunk past ``cap`` (no file is read whole first)."""
    out = []
    total = 0
    for item in form.getlist("attachments"):
        if not (isinstance(item, UploadFile) and item.filename):
            continue
        parts = []
        while chunk := await item.read(READ_CHUNK):
            total += len(chunk)
            if total > cap:
                raise ValidationFailed.one(
                    "attachments",
                    f"the attachments add up to more than {byte_size(cap)} "
                    f"(SENDAS_MAX_ATTACHMENT_BYTES) at {item.filename}",
                )
            parts.append(chunk)
        out.append(
            {
                "filename": item.filename,
                "content_type": item.content_type or "application/octet-stream",
                "content_base64": base64.b64encode(b"".join(parts)).decode(),
            }
        )
    return out


@router.post("/compose")
async def compose_send(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    errors: dict[str, str] = {}
    message_id = 0
    limits = Limits.of(ctx.settings)
    refused: RateLimited | None = None
    try:
        body: dict[str, Any] = {
            "to": _addresses(text(form, "to")),
            "cc": _addresses(text(form, "cc")),
            "bcc": _addresses(text(form, "bcc")),
            "subject": text(form, "subject"),
            "text": raw_text(form, "text"),
            "attachments": await _attachments(form, limits.max_attachment_bytes),
        }
        if raw_text(form, "html").strip():
            body["html"] = raw_text(form, "html")
        alias_id = form_id(text(form, "alias_id"))
        if alias_id is not None:
            body["alias_id"] = alias_id
        data = MessageIn.model_validate(body)

        def send() -> int:
            with ctx.db.write() as s:
                return message_svc.send_message(s, actor, data, limits=limits).id

        message_id = await run_in_threadpool(send)
    except (ValidationError, ValidationFailed) as exc:
        errors = field_errors(exc)
    except NotFound:
        errors = {"alias_id": "choose one of your aliases"}
    except RateLimited as exc:
        refused, errors = exc, {"_form": f"Not sent: {exc}."}
    if errors:
        status_code, headers = refused_status(refused)
        if is_htmx(request):
            return form_errors(request, errors, COMPOSE_FIELDS, refused)
        aliases = await run_in_threadpool(alias_choices, ctx, actor)
        values: dict[str, Any] = {
            k: raw_text(form, k) for k in ("to", "cc", "bcc", "subject", "text", "html")
        }
        values["alias_id"] = form_id(text(form, "alias_id")) or 0
        return page(
            request,
            "mail/compose.html",
            {
                "aliases": aliases,
                "v": values,
                "errors": errors,
                "attachments_cap": limits.max_attachment_bytes,
            },
            status_code=status_code,
            headers=headers,
        )
    flash(request, "Your message is queued.")
    return redirect(request, f"/messages/{message_id}")


# --- one message --------------------------------------------------------------------------


def _view(ctx: WebCtx, actor: Actor, message_id: int) -> MessageView:
    try:
        with ctx.db.read() as s:
            return message_view(s, message_svc.get_message(s, actor, message_id))
    except NotFound:
        raise PageNotFound() from None


@router.get("/messages/{message_id}")
def message_page(request: Request, ctx: WebCtx, actor: WebActor, message_id: MessageId) -> Response:
    view = _view(ctx, actor, message_id)
    template = "mail/_message_status.html" if is_htmx(request) else "mail/message.html"
    return page(request, template, {"m": view.detail, "view": view, "active": ACTIVE})


# The HTML part is the sender's own markup: it is served alone, framed by the message page
# with <iframe sandbox>, under a policy that runs no script and loads nothing remote.
HTML_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox"
)


@router.get("/messages/{message_id}/html")
def message_html(ctx: WebCtx, actor: WebActor, message_id: MessageId) -> Response:
    view = _view(ctx, actor, message_id)
    html = view.html if view.html is not None else (view.letter.html if view.letter else None)
    if html is None:
        raise PageNotFound()
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={
            "content-security-policy": HTML_POLICY,
            "x-frame-options": "SAMEORIGIN",
            "cache-control": "private, no-store",
        },
    )


@router.get("/messages/{message_id}/attachments/{index}")
def message_attachment(
    ctx: WebCtx, actor: WebActor, message_id: MessageId, index: Offset
) -> Response:
    try:
        with ctx.db.read() as s:
            found = attachment(message_svc.get_message(s, actor, message_id), index)
    except NotFound:
        raise PageNotFound() from None
    if found is None:
        raise PageNotFound()
    info, data = found
    # Always a download, never shown in the page's origin (an .html attachment included).
    return Response(
        data,
        media_type=info.content_type,
        headers={
            "content-disposition": f"attachment; filename*=UTF-8''{quote(info.filename)}",
            "cache-control": "private, no-store",
        },
    )


@router.post("/messages/{message_id}/resend")
def message_resend(
    request: Request, ctx: WebCtx, actor: WebActor, form: Form, message_id: MessageId
) -> Response:
    return _settle(
        request,
        ctx,
        actor,
        form,
        message_id,
        message_svc.resend,
        "Queued again: it goes out with the same Message-ID.",
    )


@router.post("/messages/{message_id}/mark-sent")
def message_mark_sent(
    request: Request, ctx: WebCtx, actor: WebActor, form: Form, message_id: MessageId
) -> Response:
    return _settle(
        request, ctx, actor, form, message_id, message_svc.mark_sent, "Recorded as sent."
    )


def _settle(
    request: Request,
    ctx: WebCtx,
    actor: Actor,
    form: FormData,
    message_id: int,
    action: Any,
    done: str,
) -> Response:
    back = text(form, "back")
    if not back.startswith("/") or back.startswith("//"):
        back = f"/messages/{message_id}"
    try:
        with ctx.db.write() as s:
            action(s, actor, message_id)
        flash(request, done)
    except NotFound:
        raise PageNotFound() from None
    except Conflict as exc:
        flash(request, str(exc), "error")
    return redirect(request, back)


# --- Sent log -----------------------------------------------------------------------------

PAGE_SIZE = 50


@router.get("/sent")
def sent_log(
    request: Request, ctx: WebCtx, actor: WebActor, status: str = "", page_no: PageNo = 1
) -> Response:
    status = status if status in STATUSES else ""
    with ctx.db.read() as s:
        rows, total = message_svc.list_messages(
            s, actor, status=status or None, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE
        )
        items = [message_svc.message_out(m) for m in rows]
    return page(
        request,
        "mail/sent.html",
        {
            "items": items,
            "total": total,
            "status": status,
            "statuses": STATUSES,
            "page_no": page_no,
            "pages": max(1, -(-total // PAGE_SIZE)),
        },
    )
