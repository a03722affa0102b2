"""Form letters: the new-letter page, preview, creation, live progress and pause/resume/cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from sendas.config import Settings
from sendas.context import AppContext
from sendas.errors import (
    Conflict,
    NotFound,
    RateLimited,
    TemplateError,
    TooLarge,
    ValidationFailed,
)
from sendas.schemas import CampaignOut, PreviewIn, RecipientIn
from sendas.schemas.fields import ObjectId, form_id
from sendas.services import suppressions
from sendas.services.campaigns import history, lifecycle, progress
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.csvfile import CsvLimits
from sendas.services.campaigns.form import letter_from_form
from sendas.services.campaigns.preview import preview
from sendas.services.campaigns.recipients import nth_recipient, recipients_from_upload
from sendas.services.campaigns.summary import ListSummary, summarize
from sendas.services.common import Actor
from sendas.services.quotas import Limits
from sendas.statuses import ACTIVE, CampaignStatus, MessageStatus
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
from sendas.web.routes.messages import STATUSES, alias_choices

router = APIRouter()

CAMPAIGN_FIELDS = (
    "alias_id",
    "subject",
    "text",
    "html",
    "file",
    "recipients_text",
    "email_column",
)


@router.get("/campaigns/new")
def campaign_new(request: Request, ctx: WebCtx, actor: WebActor) -> Response:
    aliases = alias_choices(ctx, actor)
    default = next((a.id for a in aliases if a.is_default), None)
    return page(
        request,
        "mail/campaign_new.html",
        {
            "aliases": aliases,
            "v": {"alias_id": default},
            "errors": {},
            "info": None,
        },
    )


def _renamed(errors: dict[str, str], form: FormData) -> dict[str, str]:
    """Problems with the CSV belong to whichever box the recipients came from."""
    upload = form.get("file")
    if "file" in errors and not (isinstance(upload, UploadFile) and upload.filename):
        errors["recipients_text"] = errors.pop("file")
    return errors


def _preview(form: FormData, settings: Settings) -> dict[str, Any]:
    """The letter as recipient number ``preview_index`` of the list gets it."""
    letter = letter_from_form(form, paste_box=True, limits=CsvLimits.of(settings))
    wanted = text(form, "preview_index")
    index, row, count = nth_recipient(
        letter.rows, int(wanted) if wanted.isascii() and wanted.isdigit() else 1
    )
    t = letter.templates
    rendered = preview(
        PreviewIn(
            subject=t.subject,
            text=t.text,
            html=t.html,
            recipient=RecipientIn(email=row.email, fields=row.fields),
        ),
        settings,
    )
    recipient = {"index": index, "email": row.email, "fields": row.fields}
    return {"rendered": rendered, "recipient": recipient, "count": count}


@router.post("/campaigns/preview")
async def campaign_preview(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    """Render the letter for recipient number N of the list (a fragment)."""
    shown: dict[str, Any] = {"rendered": None, "recipient": None, "count": 0}
    errors: dict[str, str] = {}
    try:
        shown = await run_in_threadpool(_preview, form, ctx.settings)
    except (ValidationError, ValidationFailed) as exc:
        errors = _renamed(field_errors(exc), form)
    except Conflict as exc:  # every renderer busy
        errors = {"text": str(exc)}
    return page(request, "mail/_preview.html", {**shown, "errors": errors})


def _list_summary(
    form: FormData, limits: CsvLimits, ctx: AppContext | None = None, actor: Actor | None = None
) -> ListSummary | None:
    """The chosen file or the pasted list, summarized (with ``ctx`` and ``actor``: how many
    are on the actor's suppression list); None when there is neither."""
    try:
        rows = recipients_from_upload(
            form.get("file"),
            pasted=raw_text(form, "recipients_text"),
            email_column=text(form, "email_column") or None,
            limits=limits,
        )
    except TooLarge as exc:
        return ListSummary(problem=exc.problems[0].msg)
    except ValidationFailed:
        return None  # nothing chosen or pasted yet
    if ctx is None or actor is None:
        return summarize(rows)
    owner, db = actor.id, ctx.db
    with db.read() as s:
        if not suppressions.has_any(s, owner):
            return summarize(rows)

    def among(emails: list[str]) -> set[str]:
        with db.read() as s:
            return suppressions.suppressed_among(s, owner, emails)

    return summarize(rows, among)


@router.post("/campaigns/columns")
async def campaign_columns(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    """The recipient counter, merge fields and address column of the list (a fragment)."""
    info = await run_in_threadpool(_list_summary, form, CsvLimits.of(ctx.settings), ctx, actor)
    chosen = text(form, "email_column")
    return page(request, "mail/_csv_info.html", {"info": info, "chosen": chosen})


@router.post("/campaigns")
async def campaign_create(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    errors: dict[str, str] = {}
    campaign_id = 0
    refused: RateLimited | None = None
    try:
        letter = await run_in_threadpool(
            letter_from_form, form, paste_box=True, limits=CsvLimits.of(ctx.settings)
        )
        created = await run_in_threadpool(
            create_campaign,
            ctx.db,
            actor,
            letter.templates,
            letter.rows,
            skip_invalid=letter.skip_invalid,
            list_field="file",
            limits=Limits.of(ctx.settings),
            settings=ctx.settings,
        )
        campaign_id = created.id
    except (ValidationError, ValidationFailed) as exc:
        errors = _renamed(field_errors(exc), form)
    except NotFound:
        errors = {"alias_id": "choose one of your aliases"}
    except TemplateError as exc:
        errors = {exc.field if exc.field in ("subject", "text", "html") else "text": str(exc)}
    except RateLimited as exc:
        refused, errors = exc, {"_form": f"Not sent: {exc}."}
    except Conflict as exc:  # every renderer busy
        errors = {"text": str(exc)}
    if errors:
        status_code, headers = refused_status(refused)
        if is_htmx(request):
            return form_errors(request, errors, CAMPAIGN_FIELDS, refused)
        aliases = await run_in_threadpool(alias_choices, ctx, actor)
        values: dict[str, Any] = {
            k: raw_text(form, k) for k in ("subject", "text", "html", "recipients_text")
        }
        values["alias_id"] = form_id(text(form, "alias_id")) or 0
        values["email_column"] = text(form, "email_column")
        info = await run_in_threadpool(_list_summary, form, CsvLimits.of(ctx.settings), ctx, actor)
        return page(
            request,
            "mail/campaign_new.html",
            {"aliases": aliases, "v": values, "errors": errors, "info": info},
            status_code=status_code,
            headers=headers,
        )
    if created.invalid_count:
        flash(request, f"{created.invalid_count} line(s) were skipped as invalid.", "warn")
    if created.skipped_suppressed:
        flash(
            request,
            f"{created.skipped_suppressed} recipient(s) on your suppression list were skipped.",
            "warn",
        )
    return redirect(request, f"/campaigns/{campaign_id}")


def _campaign(ctx: WebCtx, actor: Actor, campaign_id: int) -> CampaignOut:
    try:
        return progress.campaign_status(ctx.db, actor, campaign_id)
    except NotFound:
        raise PageNotFound() from None


def progress_numbers(c: CampaignOut) -> dict[str, Any]:
    waiting = sum(c.counts.get(s, 0) for s in ACTIVE)
    done = max(0, c.total - waiting)
    finished = c.status == CampaignStatus.COMPLETED or c.total == 0
    percent = 100 if finished else int(done * 100 / c.total)
    eta = c.eta_seconds
    per_minute = c.rate * 60
    if c.completed_at is not None and not c.rate:
        # Finished: the average over the whole run says more than the last minute.
        elapsed = max((c.completed_at - c.created_at).total_seconds(), 1.0)
        per_minute = c.counts.get(MessageStatus.SENT, 0) * 60 / elapsed
    return {
        "done": done,
        "summary": outcome_summary(c.counts, cancelled=c.status == CampaignStatus.CANCELLED),
        "percent": percent,
        "per_minute": round(per_minute, 1),
        "eta": None if eta is None else _duration(eta),
        # A cancelled letter stays live while a message handed to the server finishes.
        "live": c.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED) or waiting > 0,
    }


# The order outcomes are told in: "10 sent · 2 failed · 8 cancelled".
_OUTCOMES = (
    MessageStatus.SENT,
    MessageStatus.FAILED,
    MessageStatus.BOUNCED,
    MessageStatus.UNKNOWN,
    MessageStatus.CANCELLED,
)


def outcome_summary(counts: dict[str, int], *, cancelled: bool = False) -> str:
    """What became of a letter's messages, in words: ``10 sent · 10 cancelled``."""
    told = [f"{counts[s]:,} {s.value}" for s in _OUTCOMES if counts.get(s)]
    waiting = sum(counts.get(s, 0) for s in ACTIVE)
    if waiting:
        told.append(f"{waiting:,} " + ("still being sent" if cancelled else "to go"))
    return " · ".join(told) or "nothing sent yet"


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, ctx: WebCtx, actor: WebActor, campaign_id: ObjectId
) -> Response:
    c = _campaign(ctx, actor, campaign_id)
    ctx_vars: dict[str, Any] = {"c": c, "p": progress_numbers(c), "statuses": STATUSES}
    if is_htmx(request):
        response = page(request, "mail/_campaign_progress.html", ctx_vars)
        response.headers["HX-Trigger"] = "campaign-progress"
        return response
    with ctx.db.read() as s:
        skipped = history.skipped_lines(s, progress.get_campaign(s, actor, campaign_id))
    ctx_vars["skipped_count"], ctx_vars["skipped"] = skipped
    return page(request, "mail/campaign.html", ctx_vars)


@router.get("/campaigns/{campaign_id}/recipients")
def campaign_recipients(
    request: Request,
    ctx: WebCtx,
    actor: WebActor,
    campaign_id: ObjectId,
    status: str = "",
    q: str = "",
) -> Response:
    try:
        with ctx.db.read() as s:
            result = progress.list_messages(
                s,
                actor,
                campaign_id,
                status=status if status in STATUSES else None,
                q=q.strip()[:320] or None,
                limit=200,
            )
    except NotFound:
        raise PageNotFound() from None
    return page(
        request,
        "mail/_recipients.html",
        {
            "items": result.items,
            "more": result.next_after_id is not None,
            "campaign_id": campaign_id,
        },
    )


@router.post("/campaigns/{campaign_id}/{action}")
def campaign_action(
    request: Request, ctx: WebCtx, actor: WebActor, form: Form, campaign_id: ObjectId, action: str
) -> Response:
    actions = {
        "pause": lifecycle.pause_campaign,
        "resume": lifecycle.resume_campaign,
        "cancel": lifecycle.cancel_campaign,
    }
    if action not in actions:
        raise PageNotFound()
    try:
        with ctx.db.write() as s:
            actions[action](s, actor, campaign_id)
    except NotFound:
        raise PageNotFound() from None
    except Conflict as exc:
        flash(request, str(exc), "error")
    if is_htmx(request):
        return campaign_page(request, ctx, actor, campaign_id)
    return redirect(request, f"/campaigns/{campaign_id}")
