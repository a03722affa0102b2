"""Form letters: /api/campaigns.

``POST /api/campaigns`` takes JSON (recipients inline) or ``multipart/form-data`` with the
recipients as an uploaded CSV ``file``; the upload is spooled to disk by Starlette and read
twice by the service (validate, then insert), never held in memory as a list.
"""

from __future__ import annotations

import json
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
    CampaignPage,
    PreviewIn,
    PreviewOut,
)
from sendas.schemas.fields import ObjectId, Offset
from sendas.services.campaigns import history, lifecycle, progress
from sendas.services.campaigns.create import create_campaign as create
from sendas.services.campaigns.csvfile import CsvLimits
from sendas.services.campaigns.form import letter_from_form
from sendas.services.campaigns.preview import preview
from sendas.services.campaigns.recipients import json_rows
from sendas.services.quotas import Limits
from sendas.validation import field_problems

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


def _problems(exc: ValidationError) -> ValidationFailed:
    return ValidationFailed(field_problems(exc, loc_prefix=("body",)))


def _named(exc: ValidationError, raw: bytes) -> ValidationError:
    """Pydantic's JSON parser calls a lone surrogate (``"\\ud800"``) invalid JSON without
    saying where; Python's parser takes it, and validating that names the field."""
    if [e["type"] for e in exc.errors()] != ["json_invalid"]:
        return exc
    try:
        CampaignCreate.model_validate(json.loads(raw))
    except ValidationError as named:
        return named
    except ValueError:  # really not JSON
        return exc
    return exc


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
                            "email_column": {
                                "type": "string",
                                "description": "The column holding the addresses (its "
                                "header, or its number from 1); blank: the column named "
                                "email, e-mail, E-mail Address, Email Address or mail.",
                            },
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
    A CSV may use ``,``, ``;`` or tab, UTF-8 (with or without BOM) or Windows-1252; a file
    over SENDAS_CSV_MAX_BYTES or SENDAS_CSV_MAX_ROWS gives 413 and queues nothing.
    """
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        try:
            try:
                letter = await run_in_threadpool(
                    letter_from_form, form, limits=CsvLimits.of(ctx.settings)
                )
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
                limits=Limits.of(ctx.settings),
                settings=ctx.settings,
            )
        finally:
            await form.close()
    raw = await request.body()
    try:
        body = CampaignCreate.model_validate_json(raw)
    except ValidationError as exc:
        raise _problems(_named(exc, raw)) from None
    return await run_in_threadpool(
        create,
        ctx.db,
        actor,
        body,
        json_rows(body.recipients),
        skip_invalid=skip_invalid or body.skip_invalid,
        list_field="recipients",
        limits=Limits.of(ctx.settings),
        settings=ctx.settings,
    )


@router.get("")
def list_campaigns(
    ctx: CtxDep,
    actor: ActorDep,
    all_users: Annotated[
        bool, Query(description="Admins only: every user's letters, not just their own.")
    ] = False,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Continue after this page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=history.MAX_LIMIT)] = 50,
) -> CampaignPage:
    """The caller's form letters, newest first: status, total, counts, alias and dates."""
    with ctx.db.read() as s:
        return history.list_campaigns(
            s, actor, all_users=all_users, before_id=before_id, limit=limit
        )


@router.post("/preview")
def preview_campaign(ctx: CtxDep, actor: ActorDep, body: PreviewIn) -> PreviewOut:
    """Render the templates for one recipient (in a check process, within the limits of a
    send); 422 names the missing field or the part over its limits."""
    del actor  # authentication only: a preview reads nothing stored
    return preview(body, ctx.settings)


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
