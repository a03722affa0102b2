"""Form letters: /api/campaigns.

``POST /api/campaigns`` takes JSON (recipients inline) or ``multipart/form-data`` with the
recipients as an uploaded CSV ``file``; the upload is spooled to disk by Starlette and read
twice by the service (validate, then insert), never held in memory as a list.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from sendas.api.deps import ActorDep, CtxDep
from sendas.errors import ValidationFailed
from sendas.schemas import (
    CampaignCreate,
    CampaignCreated,
    CampaignMessagePage,
    CampaignOut,
    PreviewIn,
    PreviewOut,
)
from sendas.schemas.fields import ObjectId, Offset
from sendas.services.campaigns import lifecycle, progress
from sendas.services.campaigns.create import create_campaign as create
from sendas.services.campaigns.form import letter_from_form
from sendas.services.campaigns.preview import preview
from sendas.services.campaigns.recipients import json_rows
from sendas.validation import field_problems

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


def _problems(exc: ValidationError) -> ValidationFailed:
    return ValidationFailed(field_problems(exc, loc_prefix=("body",)))


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": CampaignCreate.model_json_schema(ref_template="{model}")
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["subject", "file"],
                        "properties": {
                            "alias_id": {"type": "integer"},
                            "subject": {"type": "string"},
                            "text": {"type": "string"},
                            "html": {"type": "string"},
                            "skip_invalid": {"type": "boolean"},
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                },
            }
        }
    },
)
async def create_campaign(
    request: Request,
    ctx: CtxDep,
    actor: ActorDep,
    skip_invalid: Annotated[bool, Query()] = False,
) -> CampaignCreated:
    """Queue a form letter: 202 once every message row is committed.

    Bad recipients give 422 with one entry per bad line, and nothing is queued, unless
    ``skip_invalid`` is true: then the valid ones are queued and the bad lines listed.
    """
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        try:
            try:
                letter = await run_in_threadpool(letter_from_form, form)
            except ValidationError as exc:
                raise _problems(exc) from None
            return await run_in_threadpool(
                create,
                ctx.db,
                actor,
                letter.templates,
                letter.rows,
                skip_invalid=skip_invalid or letter.skip_invalid,
                list_field="file",
            )
        finally:
            await form.close()
    try:
        body = CampaignCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _problems(exc) from None
    return await run_in_threadpool(
        create,
        ctx.db,
        actor,
        body,
        json_rows(body.recipients),
        skip_invalid=skip_invalid or body.skip_invalid,
        list_field="recipients",
    )


@router.post("/preview")
def preview_campaign(actor: ActorDep, body: PreviewIn) -> PreviewOut:
    """Render the templates for one recipient; 422 names the missing field."""
    del actor  # authentication only: a preview reads nothing stored
    return preview(body)


@router.get("/{campaign_id}")
def get_campaign(ctx: CtxDep, actor: ActorDep, campaign_id: ObjectId) -> CampaignOut:
    return progress.campaign_status(ctx.db, actor, campaign_id)


@router.post("/{campaign_id}/pause")
def pause_campaign(ctx: CtxDep, actor: ActorDep, campaign_id: ObjectId) -> CampaignOut:
    with ctx.db.write() as s:
        return progress.campaign_out(s, lifecycle.pause_campaign(s, actor, campaign_id))


@router.post("/{campaign_id}/resume")
def resume_campaign(ctx: CtxDep, actor: ActorDep, campaign_id: ObjectId) -> CampaignOut:
    with ctx.db.write() as s:
        return progress.campaign_out(s, lifecycle.resume_campaign(s, actor, campaign_id))


@router.post("/{campaign_id}/cancel")
def cancel_campaign(ctx: CtxDep, actor: ActorDep, campaign_id: ObjectId) -> CampaignOut:
    with ctx.db.write() as s:
        return progress.campaign_out(s, lifecycle.cancel_campaign(s, actor, campaign_id))


@router.get("/{campaign_id}/messages")
def campaign_messages(
    ctx: CtxDep,
    actor: ActorDep,
    campaign_id: ObjectId,
    status: str | None = None,
    q: Annotated[str | None, Query(max_length=320)] = None,
    after_id: Annotated[Offset | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CampaignMessagePage:
    """Per-recipient outcomes; ``status`` filters, ``q`` searches the address."""
    with ctx.db.read() as s:
        return progress.list_messages(
            s, actor, campaign_id, status=status or None, q=q, after_id=after_id, limit=limit
        )
