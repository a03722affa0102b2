"""Form letters: /api/campaigns.

``POST /api/campaigns`` takes JSON (recipients inline) or ``multipart/form-data`` with the
recipients as an uploaded CSV ``file``; the upload is spooled to disk by Starlette and read
twice by the service (validate, then insert), never held in memory as a list.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from sendas.api.deps import ActorDep, CtxDep
from sendas.errors import FieldProblem, TemplateError, ValidationFailed
from sendas.merge import PARTS, Recipient, compile_templates, preview
from sendas.services import campaigns as svc

router = APIRouter(prefix="/campaigns", tags=["campaigns"])

_TRUE = {"1", "true", "yes", "on"}


def _problems(exc: ValidationError) -> ValidationFailed:
    return ValidationFailed(
        [
            FieldProblem(
                ("body", *e["loc"]), str(e["msg"]).removeprefix("Value error, "), e["type"]
            )
            for e in exc.errors()
        ]
    )


async def _form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    raw = await value.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed.one(name, "the file is not UTF-8 text") from None


@contextmanager
def _rewound(file: IO[bytes]) -> Iterator[IO[bytes]]:
    file.seek(0)
    yield file  # the upload stays open: the service reads it twice


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": svc.CampaignCreate.model_json_schema(ref_template="{model}")
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
) -> svc.CampaignCreated:
    """Queue a form letter: 202 once every message row is committed.

    Bad recipients give 422 with one entry per bad line, and nothing is queued, unless
    ``skip_invalid`` is true: then the valid ones are queued and the bad lines listed.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ValidationFailed.one("file", "upload the recipients as a CSV file")
            values: dict[str, Any] = {
                "alias_id": form.get("alias_id") or None,
                "subject": await _form_text(form, "subject"),
                "text": await _form_text(form, "text"),
                "html": await _form_text(form, "html"),
            }
            skip = skip_invalid or str(form.get("skip_invalid", "")).lower() in _TRUE
            try:
                data = svc.CampaignTemplatesIn.model_validate(
                    {k: v for k, v in values.items() if v is not None}
                )
            except ValidationError as exc:
                raise _problems(exc) from None
            rows = svc.csv_rows(lambda: _rewound(upload.file))
            return await run_in_threadpool(
                svc.create_campaign, ctx.db, actor, data, rows,
                skip_invalid=skip, list_field="file",
            )
        finally:
            await form.close()
    try:
        body = svc.CampaignCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _problems(exc) from None
    return await run_in_threadpool(
        svc.create_campaign, ctx.db, actor, body, svc.json_rows(body.recipients),
        skip_invalid=skip_invalid or body.skip_invalid, list_field="recipients",
    )


@router.post("/preview")
def preview_campaign(actor: ActorDep, body: svc.PreviewIn) -> svc.PreviewOut:
    """Render the templates for one recipient; 422 names the missing field."""
    del actor  # authentication only: a preview reads nothing stored
    problem = svc.address_problem(body.recipient.email.strip())
    if problem:
        raise ValidationFailed([FieldProblem(("body", "recipient", "email"), problem)])
    try:
        templates = compile_templates(body.subject, body.text, body.html)
        rendered = preview(
            body.subject, body.text, body.html,
            Recipient(body.recipient.email.strip(), body.recipient.fields),
        )
    except TemplateError as exc:
        part = exc.field if exc.field in PARTS else None
        if part is None:
            part = templates.part_of(exc.field) if exc.field else "text"
        raise ValidationFailed.one(part, str(exc), "template_error") from None
    return svc.PreviewOut(subject=rendered.subject, text=rendered.text, html=rendered.html)


@router.get("/{campaign_id}")
def get_campaign(ctx: CtxDep, actor: ActorDep, campaign_id: int) -> svc.CampaignOut:
    return svc.campaign_status(ctx.db, actor, campaign_id)


@router.post("/{campaign_id}/pause")
def pause_campaign(ctx: CtxDep, actor: ActorDep, campaign_id: int) -> svc.CampaignOut:
    with ctx.db.write() as s:
        return svc.campaign_out(s, svc.pause_campaign(s, actor, campaign_id))


@router.post("/{campaign_id}/resume")
def resume_campaign(ctx: CtxDep, actor: ActorDep, campaign_id: int) -> svc.CampaignOut:
    with ctx.db.write() as s:
        return svc.campaign_out(s, svc.resume_campaign(s, actor, campaign_id))


@router.post("/{campaign_id}/cancel")
def cancel_campaign(ctx: CtxDep, actor: ActorDep, campaign_id: int) -> svc.CampaignOut:
    with ctx.db.write() as s:
        return svc.campaign_out(s, svc.cancel_campaign(s, actor, campaign_id))


@router.get("/{campaign_id}/messages")
def campaign_messages(
    ctx: CtxDep,
    actor: ActorDep,
    campaign_id: int,
    status: str | None = None,
    q: Annotated[str | None, Query(max_length=320)] = None,
    after_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> svc.MessagePage:
    """Per-recipient outcomes; ``status`` filters, ``q`` searches the address."""
    with ctx.db.read() as s:
        return svc.list_messages(
            s, actor, campaign_id, status=status or None, q=q, after_id=after_id, limit=limit
        )
