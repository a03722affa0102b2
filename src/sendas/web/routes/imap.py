"""IMAP accounts: list, edit, test (the copy of sent mail goes to their Sent folder)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from sendas.errors import Conflict, NotFound, ValidationFailed
from sendas.net.tls_modes import IMAP_TLS_CHOICES as TLS_CHOICES
from sendas.schemas import ImapCreate, ImapPatch
from sendas.schemas.fields import ObjectId, form_id
from sendas.services import connection_test
from sendas.services import imap_accounts as svc
from sendas.web.deps import Form, PageNotFound, WebActor, WebCtx, raw_text, text
from sendas.web.limits import refused_result, test_refused
from sendas.web.render import field_errors, flash, form_errors, is_htmx, page, redirect

router = APIRouter()

IMAP_FIELDS = (
    "description",
    "imap_server",
    "username",
    "password",
    "tls",
    "sent_folder",
    "ca_bundle",
)
# The fields of the alias form's "Add an IMAP account" dialog, whose ids carry this prefix.
DIALOG_FIELDS = ("description", "imap_server", "username", "password", "tls")
DIALOG_PREFIX = "imap-"


def _prefixed(names: tuple[str, ...]) -> tuple[str, ...]:
    """Field names as the dialog's error slots name them."""
    return tuple(DIALOG_PREFIX + n for n in names)


def _prefixed_errors(errors: dict[str, str]) -> dict[str, str]:
    return {DIALOG_PREFIX + k: v for k, v in errors.items()}


@router.get("/imap")
def imap_list(request: Request, ctx: WebCtx, actor: WebActor) -> Response:
    with ctx.db.read() as s:
        accounts = [svc.imap_out(a) for a in svc.list_imap_accounts(s, actor)]
    return page(request, "imap/list.html", {"accounts": accounts})


def _edit(
    request: Request,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "imap/edit.html",
        {
            "v": values,
            "errors": errors or {},
            "tls_choices": TLS_CHOICES,
            "fields": IMAP_FIELDS,
        },
        status_code=status_code,
    )


@router.get("/imap/new")
def imap_new(request: Request, actor: WebActor) -> Response:
    return _edit(request, {"id": None, "tls": "auto", "password_set": False})


@router.get("/imap/quick-add")
def imap_quick_form(request: Request, actor: WebActor) -> Response:
    """The alias form's "Add an IMAP account" dialog content (before /imap/{account_id},
    which would claim the path)."""
    return page(request, "aliases/_imap_dialog.html", {"imap_tls_choices": TLS_CHOICES})


@router.get("/imap/{account_id}")
def imap_edit(request: Request, ctx: WebCtx, actor: WebActor, account_id: ObjectId) -> Response:
    try:
        with ctx.db.read() as s:
            out = svc.imap_out(svc.get_imap_account(s, actor, account_id))
    except NotFound:
        raise PageNotFound() from None
    return _edit(request, out.model_dump())


def _input(form: FormData) -> dict[str, Any]:
    data: dict[str, Any] = {
        "description": text(form, "description"),
        "imap_server": text(form, "imap_server"),
        "username": text(form, "username"),
        "tls": text(form, "tls") or "auto",
        "sent_folder": text(form, "sent_folder") or None,
    }
    if raw_text(form, "password"):
        data["password"] = raw_text(form, "password")
    if raw_text(form, "ca_bundle").strip():
        data["ca_bundle"] = raw_text(form, "ca_bundle").strip()
    return data


@router.post("/imap/save")
def imap_save(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    raw_id = text(form, "account_id")
    account_id = form_id(raw_id)
    data = _input(form)
    try:
        with ctx.db.write() as s:
            if account_id is None:
                acc = svc.create_imap_account(
                    s, actor, ImapCreate.model_validate(data), ctx.secrets
                )
            else:
                acc = svc.update_imap_account(
                    s, actor, account_id, ImapPatch.model_validate(data), ctx.secrets
                )
            account_id = acc.id
    except (ValidationError, ValidationFailed) as exc:
        errors = field_errors(exc)
        if is_htmx(request):
            return form_errors(request, errors, IMAP_FIELDS, not_done="Not saved")
        values = {**data, "id": account_id, "password": None, "password_set": False}
        return _edit(request, values, errors, 422)
    except NotFound:
        raise PageNotFound() from None
    flash(request, "Saved the IMAP account. Use Test to check it can log in and find Sent.")
    return redirect(request, f"/imap/{account_id}")


@router.post("/imap/test")
async def imap_test_unsaved(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    """Test the settings as typed, before saving; with ``account_id`` the stored password
    is used when none is typed. Answers a fragment for the test result."""
    refused = await test_refused(ctx, actor)
    if refused is not None:
        return refused_result(request, refused, ())
    raw_id = text(form, "account_id")
    data = _input(form)
    result = None
    errors: dict[str, str] = {}
    try:
        result = await connection_test.check_imap_settings(
            ctx, actor, ImapPatch.model_validate(data), form_id(raw_id)
        )
    except (ValidationError, ValidationFailed) as exc:
        errors = field_errors(exc)
    except NotFound:
        raise PageNotFound() from None
    # The alias form's dialog names its error slots err-imap-*: the alias's own stay as they are.
    in_dialog = text(form, "error_prefix") == DIALOG_PREFIX
    context = {
        "result": result,
        "imap_only": True,
        "errors": _prefixed_errors(errors) if in_dialog else errors,
        "fields": _prefixed(DIALOG_FIELDS) if in_dialog else IMAP_FIELDS,
        "tls_offer": data["tls"] == "auto" and not in_dialog,
    }
    return page(request, "_test_result.html", context)


@router.post("/imap/quick-add")
def imap_quick_add(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    """Create an account from the alias form's dialog; answers the dialog's status, the
    alias form's IMAP choices (out of band, the new account selected) and an event."""
    data = _input(form)
    try:
        with ctx.db.write() as s:
            acc = svc.create_imap_account(s, actor, ImapCreate.model_validate(data), ctx.secrets)
            created = svc.imap_out(acc)
            imaps = [svc.imap_out(a) for a in svc.list_imap_accounts(s, actor)]
    except (ValidationError, ValidationFailed) as exc:
        errors = _prefixed_errors(field_errors(exc))
        context = {"errors": errors, "fields": _prefixed(DIALOG_FIELDS), "created": None}
        return page(request, "imap/_quick_add.html", context, status_code=422)
    response = page(
        request,
        "imap/_quick_add.html",
        {"errors": {}, "fields": _prefixed(DIALOG_FIELDS), "created": created, "imaps": imaps},
    )
    response.headers["HX-Trigger-After-Settle"] = json.dumps({"imapAccountAdded": {"id": acc.id}})
    return response


@router.post("/imap/{account_id}/test")
async def imap_test(
    request: Request, ctx: WebCtx, actor: WebActor, form: Form, account_id: ObjectId
) -> Response:
    refused = await test_refused(ctx, actor)
    if refused is not None:
        return refused_result(request, refused, ())
    try:
        result = await connection_test.check_imap_account(ctx, actor, account_id)
    except NotFound:
        raise PageNotFound() from None
    return page(
        request,
        "_test_result.html",
        {"result": result, "imap_only": True, "errors": {}, "fields": ()},
    )


@router.post("/imap/{account_id}/delete")
def imap_delete(
    request: Request, ctx: WebCtx, actor: WebActor, form: Form, account_id: ObjectId
) -> Response:
    try:
        with ctx.db.write() as s:
            svc.delete_imap_account(s, actor, account_id)
    except NotFound:
        raise PageNotFound() from None
    except Conflict as exc:
        flash(request, str(exc), "error")
        return redirect(request, f"/imap/{account_id}")
    flash(request, "Deleted the IMAP account.")
    return redirect(request, "/imap")
