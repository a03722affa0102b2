"""The account page: change your own password, list / create / revoke your API tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import SecretStr, ValidationError

from sendas.errors import NotFound, ValidationFailed
from sendas.schemas import PasswordChange, TokenCreate
from sendas.schemas.fields import ObjectId
from sendas.services import accounts
from sendas.services import users as user_svc
from sendas.web.deps import Form, PageNotFound, WebActor, WebCtx, raw_text, text
from sendas.web.render import field_errors, flash, page, redirect
from sendas.web.security import password_guard
from sendas.web.session_state import cookie_session_id

router = APIRouter(prefix="/account")

EXPIRY_CHOICES = {"": "Never", "7": "In 7 days", "30": "In 30 days", "90": "In 90 days",
                  "365": "In a year"}  # fmt: skip


def _account(
    request: Request,
    ctx: WebCtx,
    actor: WebActor,
    *,
    errors: dict[str, str] | None = None,
    new_token: str = "",
    status_code: int = 200,
) -> Response:
    with ctx.db.read() as s:
        tokens = [
            {
                "id": t.id,
                "name": t.name,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "last_used_at": t.last_used_at,
            }
            for t in accounts.list_tokens(s, actor.id)
        ]
    context: dict[str, Any] = {
        "tokens": tokens,
        "errors": errors or {},
        # Shown on this answer only: never in a cookie, a flash or a log.
        "new_token": new_token,
        "expiry_choices": EXPIRY_CHOICES,
    }
    # A new token is on this page: no copy in the browser's cache or its Back button.
    no_store = {"Cache-Control": "no-store"}
    return page(request, "account.html", context, status_code=status_code, headers=no_store)


@router.get("")
def account_page(request: Request, ctx: WebCtx, actor: WebActor) -> Response:
    return _account(request, ctx, actor)


@router.post("/password")
def change_password(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    errors: dict[str, str] = {}
    new = raw_text(form, "new_password")
    if new != raw_text(form, "new_password_again"):
        errors["new_password_again"] = "the two passwords differ"
    try:
        data = PasswordChange(
            current_password=SecretStr(raw_text(form, "current_password")),
            new_password=SecretStr(new),
        )
    except ValidationError as exc:
        errors.update(field_errors(exc))
    throttle, client = password_guard(request)
    wait = throttle.retry_after(client, actor.email)
    if wait:
        errors["current_password"] = f"too many attempts: try again in {wait} seconds"
        return _account(request, ctx, actor, errors=errors, status_code=429)
    if not errors:
        try:
            accounts.change_own_password(
                ctx.db, actor, data, keep_session=cookie_session_id(request)
            )
        except ValidationFailed as exc:
            throttle.failed(client, actor.email)
            errors.update(field_errors(exc))
    if errors:
        return _account(request, ctx, actor, errors=errors, status_code=422)
    flash(request, "Password changed. Your other signed-in browsers were signed out.")
    return redirect(request, "/account")


@router.post("/tokens")
def create_token(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    days = text(form, "expires_in")
    expires = None
    if days in EXPIRY_CHOICES and days:
        expires = datetime.now(UTC) + timedelta(days=int(days))
    try:
        data = TokenCreate(name=text(form, "name"), expires_at=expires)
    except ValidationError as exc:
        return _account(request, ctx, actor, errors=field_errors(exc), status_code=422)
    with ctx.db.write() as s:
        user = user_svc.get_user_by_email(s, actor.email)
        _, token = user_svc.create_token(s, user, data.name, data.expires_at)
    return _account(request, ctx, actor, new_token=token)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, ctx: WebCtx, actor: WebActor, token_id: ObjectId, form: Form
) -> Response:
    try:
        with ctx.db.write() as s:
            accounts.revoke_token(s, actor, token_id)
    except NotFound:
        raise PageNotFound() from None
    flash(request, "Token revoked: it no longer works.")
    return redirect(request, "/account")
