"""The suppression list page: addresses form letters skip; add one, remove one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from sendas.errors import NotFound, ValidationFailed
from sendas.schemas import SuppressionIn
from sendas.schemas.fields import ObjectId
from sendas.services import suppressions as svc
from sendas.web.deps import Form, PageNotFound, WebActor, WebCtx, text
from sendas.web.render import field_errors, flash, is_htmx, page, redirect

router = APIRouter(prefix="/suppressions")

PAGE_SIZE = 50


def _list_page(
    request: Request,
    ctx: WebCtx,
    actor: WebActor,
    *,
    q: str = "",
    before_id: int | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with ctx.db.read() as s:
        result = svc.list_suppressions(s, actor, q=q, before_id=before_id, limit=PAGE_SIZE)
    context: dict[str, Any] = {
        "items": result.items,
        "next_before_id": result.next_before_id,
        "before_id": before_id,
        "q": q,
        "errors": errors or {},
        "v": values or {},
    }
    # The search box asks for the list alone.
    template = "suppressions/_rows.html" if is_htmx(request) else "suppressions/list.html"
    return page(request, template, context, status_code=status_code)


@router.get("")
def suppression_list(
    request: Request, ctx: WebCtx, actor: WebActor, q: str = "", before_id: str = ""
) -> Response:
    after = int(before_id) if before_id.isascii() and before_id.isdigit() else None
    if after is not None and not 1 <= after < 2**31:
        after = None
    return _list_page(request, ctx, actor, q=q[:320], before_id=after)


@router.post("")
def suppression_add(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    values = {"address": text(form, "address"), "reason": text(form, "reason")}
    try:
        data = SuppressionIn(address=values["address"], reason=values["reason"] or None)
        with ctx.db.write() as s:
            row = svc.add_suppression(s, actor, data)
            address = row.address
    except (ValidationError, ValidationFailed) as exc:
        return _list_page(
            request, ctx, actor, errors=field_errors(exc), values=values, status_code=422
        )
    flash(request, f"{address} is on your suppression list: form letters skip it.")
    return redirect(request, "/suppressions")


@router.post("/{suppression_id}/remove")
def suppression_remove(
    request: Request, ctx: WebCtx, actor: WebActor, suppression_id: ObjectId, form: Form
) -> Response:
    del form  # checked for its CSRF token
    try:
        with ctx.db.write() as s:
            address = svc.remove_suppression(s, actor, suppression_id).address
    except NotFound:
        raise PageNotFound() from None
    flash(request, f"{address} was taken off the list: form letters go to it again.")
    return redirect(request, "/suppressions")
