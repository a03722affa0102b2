"""Email Alias List, Edit Alias, Test Connection."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from sendas.endpoints import imap_uses_alias_token
from sendas.errors import NotFound, SendasError, ValidationFailed
from sendas.net.tls_modes import SMTP_TLS_CHOICES as TLS_CHOICES
from sendas.oauth.providers import PROVIDER_NAMES
from sendas.outbox.lanes import aliases_needing_attention
from sendas.schemas import (
    AliasCreate,
    AliasOut,
    AliasPatch,
    ConnectionTestResult,
)
from sendas.schemas.fields import ObjectId, form_id
from sendas.services import aliases as svc
from sendas.services import connection_test, oauth_clients
from sendas.services import imap_accounts as imap_svc
from sendas.services.common import Actor
from sendas.web import receipts
from sendas.web.deps import (
    Form,
    PageNotFound,
    WebActor,
    WebCtx,
    checked,
    raw_text,
    text,
)
from sendas.web.limits import refused_result, test_refused
from sendas.web.presets import PRESETS
from sendas.web.render import field_errors, flash, is_htmx, page, redirect
from sendas.web.smtp_form import pacing_input, tls_input

router = APIRouter()

# Every field of the form that can carry an error, in screen order.
ALIAS_FIELDS = (
    "description",
    "alias_name",
    "from_address",
    "reply_to",
    "smtp_server",
    "imap_account_id",
    "smtp_username",
    "smtp_password",
    "tls",
    "allow_plaintext_auth",
    "is_default",
    "delay_ms",
    "max_connections",
    "ca_bundle",
    "auth",
)


def oauth_state(session: Session) -> dict[str, dict[str, bool]]:
    """Per provider: ``available`` once the admin has registered its app."""
    return {p: {"available": oauth_clients.is_configured(session, p)} for p in PROVIDER_NAMES}


@router.get("/aliases")
def alias_list(request: Request, ctx: WebCtx, actor: WebActor) -> Response:
    with ctx.db.read() as s:
        rows = svc.list_aliases(s, actor)
        outs = [svc.alias_out(a) for a in rows]
        attention = aliases_needing_attention(s, [a.id for a in rows])
        imap_names = {
            a.id: a.imap_account.description or a.imap_account.username
            for a in rows
            if a.imap_account is not None
        }
        # Said on the card: which IMAP logins use the alias's sign-in token (XOAUTH2).
        imap_token = {a.id for a in rows if imap_uses_alias_token(a, a.imap_account)}
    cards = [
        {
            "a": out,
            "attention": out.needs_reauth or out.id in attention,
            "imap": imap_names.get(out.id, ""),
            "imap_xoauth2": out.id in imap_token,
            "test": out.last_test,
        }
        for out in outs
    ]
    return page(request, "aliases/list.html", {"cards": cards})


def _values_from_alias(out: AliasOut) -> dict[str, Any]:
    v: dict[str, Any] = out.model_dump()
    v["reply_to"] = out.reply_to or ""
    v["imap_account_id"] = out.imap_account_id or ""
    return v


def _blank_values() -> dict[str, Any]:
    return {
        "id": None,
        "description": "",
        "alias_name": "",
        "from_address": "",
        "reply_to": "",
        "smtp_server": "",
        "imap_account_id": "",
        "smtp_username": "",
        "tls": "auto",
        "allow_plaintext_auth": False,
        "is_default": False,
        "delay_ms": 0,
        "max_connections": 1,
        "auth": "password",
        "password_set": False,
        "ca_bundle_set": False,
        "needs_reauth": False,
        "warnings": [],
    }


def _values_from_form(form: FormData, stored: dict[str, Any]) -> dict[str, Any]:
    """What the user typed, to show again after an error (never the password)."""
    v = dict(stored)
    for name in (
        "description",
        "alias_name",
        "from_address",
        "reply_to",
        "smtp_server",
        "smtp_username",
        "delay_ms",
        "max_connections",
        "imap_account_id",
    ):
        v[name] = text(form, name)
    v["tls"] = "none" if checked(form, "disable_tls") else (text(form, "tls") or "auto")
    v["allow_plaintext_auth"] = checked(form, "allow_plaintext_auth")
    v["is_default"] = stored.get("is_default") or checked(form, "is_default")
    v["preset"] = text(form, "preset")
    return v


def _edit_page(
    request: Request,
    ctx: WebCtx,
    actor: Actor,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with ctx.db.read() as s:
        imaps = [imap_svc.imap_out(a) for a in imap_svc.list_imap_accounts(s, actor)]
        oauth = oauth_state(s)
    return page(
        request,
        "aliases/edit.html",
        {
            "v": values,
            "errors": errors or {},
            "imaps": imaps,
            "oauth": oauth,
            "presets": PRESETS,
            "tls_choices": TLS_CHOICES,
            "fields": ALIAS_FIELDS,
        },
        status_code=status_code,
    )


@router.get("/aliases/new")
def alias_new(request: Request, ctx: WebCtx, actor: WebActor) -> Response:
    return _edit_page(request, ctx, actor, _blank_values())


@router.get("/aliases/{alias_id}")
def alias_edit(request: Request, ctx: WebCtx, actor: WebActor, alias_id: ObjectId) -> Response:
    try:
        with ctx.db.read() as s:
            out = svc.alias_out(svc.get_alias(s, actor, alias_id))
    except NotFound:
        raise PageNotFound() from None
    return _edit_page(request, ctx, actor, _values_from_alias(out))


def alias_input(form: FormData, *, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as AliasCreate/AliasPatch input, plus errors found before validation.

    An empty password field keeps the stored password; the Disable SSL/TLS box is tls "none".
    """
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in ("description", "alias_name", "smtp_server", "smtp_username"):
        data[name] = text(form, name)
    for name in ("from_address", "reply_to"):
        value = text(form, name)
        if value:
            data[name] = value
        elif name == "reply_to" and not creating:
            data[name] = None  # clearing the field removes the reply-to address
    imap = form_id(text(form, "imap_account_id"))
    if imap is not None:
        data["imap_account_id"] = imap
    elif not creating:
        data["imap_account_id"] = None
    password = raw_text(form, "smtp_password")
    if password:
        data["smtp_password"] = password
    data.update(tls_input(form))
    if checked(form, "is_default"):
        data["is_default"] = True
    pacing_input(form, data, errors)
    auth = text(form, "auth")
    if auth in ("password", "google", "microsoft"):
        data["auth"] = auth
    return data, errors


def _model_errors(data: dict[str, Any], *, creating: bool) -> dict[str, str]:
    try:
        (AliasCreate if creating else AliasPatch).model_validate(data)
    except ValidationError as exc:
        return field_errors(exc)
    return {}


def _alias_id(form: FormData) -> int | None:
    return form_id(text(form, "alias_id"))


def _save_failed(
    request: Request,
    ctx: WebCtx,
    actor: Actor,
    form: FormData,
    alias_id: int | None,
    errors: dict[str, str],
) -> Response:
    if is_htmx(request):
        # The form stays as typed (password included); only the error slots change.
        return page(
            request,
            "aliases/_save_errors.html",
            {"errors": errors, "fields": ALIAS_FIELDS},
            status_code=422,
        )
    stored = _blank_values()
    if alias_id is not None:
        try:
            with ctx.db.read() as s:
                stored = _values_from_alias(svc.alias_out(svc.get_alias(s, actor, alias_id)))
        except NotFound:
            raise PageNotFound() from None
    values = _values_from_form(form, stored)
    if raw_text(form, "smtp_password"):
        errors.setdefault("smtp_password", "type the password again: it is never sent back")
    return _edit_page(request, ctx, actor, values, errors, status_code=422)


@router.post("/aliases/save")
def alias_save(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    alias_id = _alias_id(form)
    data, errors = alias_input(form, creating=alias_id is None)
    warnings: list[str] = []
    if errors:  # report the model's own errors too, all at once
        errors = {**_model_errors(data, creating=alias_id is None), **errors}
    else:
        try:
            with ctx.db.write() as s:
                if alias_id is None:
                    alias, warnings = svc.create_alias(
                        s,
                        actor,
                        AliasCreate.model_validate(data),
                        ctx.secrets,
                        max_connections_cap=ctx.settings.max_connections_cap,
                    )
                else:
                    alias, warnings = svc.update_alias(
                        s,
                        actor,
                        alias_id,
                        AliasPatch.model_validate(data),
                        ctx.secrets,
                        max_connections_cap=ctx.settings.max_connections_cap,
                    )
                description = alias.description
                # A passing test of exactly these settings, run before saving, counts.
                tested = receipts.redeem(
                    ctx.settings, text(form, receipts.FIELD), actor.id, alias_id, data
                )
                if tested is not None:
                    alias.last_test = tested
        except (ValidationError, ValidationFailed) as exc:
            errors = field_errors(exc)
        except NotFound:
            raise PageNotFound() from None
    if errors:
        return _save_failed(request, ctx, actor, form, alias_id, errors)
    flash(request, f"Saved alias “{description}”.")
    for w in warnings:
        flash(request, w, "warn")
    return redirect(request, "/aliases")


@router.post("/aliases/{alias_id}/default")
def alias_make_default(
    request: Request, ctx: WebCtx, actor: WebActor, form: Form, alias_id: ObjectId
) -> Response:
    try:
        with ctx.db.write() as s:
            description = svc.make_default(s, actor, alias_id).description
    except NotFound:
        raise PageNotFound() from None
    flash(request, f"“{description}” is now your default alias.")
    return redirect(request, "/aliases")


@router.post("/aliases/{alias_id}/test-saved")
async def alias_test_saved(
    request: Request, ctx: WebCtx, actor: WebActor, form: Form, alias_id: ObjectId
) -> Response:
    """Test a saved alias from its card; the outcome becomes the card's "Last test"."""
    refused = await test_refused(ctx, actor)
    if refused is not None:
        flash(request, f"Not tested: {refused}.", "error")
        return redirect(request, "/aliases")
    try:
        result = await connection_test.check_saved_alias(ctx, actor, alias_id)
    except NotFound:
        raise PageNotFound() from None
    if result.ok:
        flash(request, "Status: OK — the alias can send.")
    else:
        flash(request, f"Status: FAILED at {result.step}. {result.hint}", "error")
    return redirect(request, "/aliases")


@router.post("/aliases/{alias_id}/delete")
def alias_delete(
    request: Request, ctx: WebCtx, actor: WebActor, form: Form, alias_id: ObjectId
) -> Response:
    try:
        with ctx.db.write() as s:
            description = svc.get_alias(s, actor, alias_id).description
            svc.delete_alias(s, actor, alias_id)
    except NotFound:
        raise PageNotFound() from None
    except SendasError as exc:
        flash(request, str(exc), "error")
        return redirect(request, f"/aliases/{alias_id}")
    flash(request, f"Deleted alias “{description}”.")
    return redirect(request, "/aliases")


@router.post("/aliases/test")
async def alias_test(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    """Test the settings as typed (saved or not); answers a fragment for #test-result."""
    refused = await test_refused(ctx, actor)
    if refused is not None:
        return refused_result(request, refused, ALIAS_FIELDS)
    alias_id = _alias_id(form)
    data, errors = alias_input(form, creating=True)
    if not data.get("description"):
        data["description"] = "(unsaved alias)"  # the description plays no part in a test
    data.pop("is_default", None)
    result: ConnectionTestResult | None = None
    receipt: str | None = None
    if not errors:
        try:
            model = AliasCreate.model_validate(data)
            result = await connection_test.check_alias_settings(ctx, actor, model, alias_id)
            receipt = receipts.issue(ctx.settings, actor.id, alias_id, data, result)
        except (ValidationError, ValidationFailed) as exc:
            errors = field_errors(exc)
        except NotFound:
            raise PageNotFound() from None
    return page(
        request,
        "_test_result.html",
        {
            "result": result,
            "errors": errors,
            "fields": ALIAS_FIELDS,
            "tls_offer": data.get("tls") == "auto",
            "receipt": receipt,
            "receipt_field": receipts.FIELD,
        },
    )
