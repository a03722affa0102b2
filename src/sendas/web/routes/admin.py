"""Admin screens: the database's own outgoing settings, users, and the sign-in apps."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import SecretStr, ValidationError
from starlette.datastructures import FormData

from sendas.errors import NotFound, ValidationFailed
from sendas.net.tls_modes import SMTP_TLS_CHOICES as TLS_CHOICES
from sendas.oauth.providers import PROVIDER_NAMES, get_provider
from sendas.schemas import (
    OAuthClientIn,
    SystemOutgoingIn,
    SystemOutgoingTest,
    UserCreate,
    UserPatch,
)
from sendas.schemas.fields import ObjectId
from sendas.services import accounts, connection_test
from sendas.services import oauth_clients as oauth_svc
from sendas.services import system_outgoing as outgoing_svc
from sendas.services import users as user_svc
from sendas.web.deps import Form, PageNotFound, WebAdmin, WebCtx, raw_text, text
from sendas.web.limits import refused_result, test_refused
from sendas.web.render import field_errors, flash, form_errors, is_htmx, page, redirect
from sendas.web.smtp_form import pacing_input, tls_input

router = APIRouter(prefix="/admin")

OUTGOING_FIELDS = (
    "from_name",
    "from_address",
    "reply_to",
    "smtp_server",
    "smtp_username",
    "smtp_password",
    "tls",
    "allow_plaintext_auth",
    "delay_ms",
    "max_connections",
    "ca_bundle",
)


def _outgoing_input(form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    data: dict[str, Any] = {
        "from_name": text(form, "from_name"),
        "from_address": text(form, "from_address") or None,
        "reply_to": text(form, "reply_to") or None,
        "smtp_server": text(form, "smtp_server"),
        "smtp_username": text(form, "smtp_username"),
    }
    if data["from_address"] is None:
        data.pop("from_address")
    if raw_text(form, "smtp_password"):
        data["smtp_password"] = raw_text(form, "smtp_password")
    data.update(tls_input(form))
    errors: dict[str, str] = {}
    pacing_input(form, data, errors)
    return data, errors


@router.get("/outgoing")
def outgoing_page(request: Request, ctx: WebCtx, admin: WebAdmin) -> Response:
    with ctx.db.read() as s:
        out = outgoing_svc.system_out(outgoing_svc.get_settings_row(s))
    return _outgoing_page(request, out.model_dump(), {})


def _outgoing_page(
    request: Request, values: dict[str, Any], errors: dict[str, str], status_code: int = 200
) -> Response:
    context = {"v": values, "errors": errors, "tls_choices": TLS_CHOICES}
    return page(request, "admin/outgoing.html", context, status_code=status_code)


@router.post("/outgoing")
def outgoing_save(request: Request, ctx: WebCtx, admin: WebAdmin, form: Form) -> Response:
    data, errors = _outgoing_input(form)
    if not errors:
        try:
            with ctx.db.write() as s:
                outgoing_svc.update_system_outgoing(
                    s,
                    admin,
                    SystemOutgoingIn.model_validate(data),
                    ctx.secrets,
                    max_connections_cap=ctx.settings.max_connections_cap,
                )
        except (ValidationError, ValidationFailed) as exc:
            errors = field_errors(exc)
    if errors:
        if is_htmx(request):
            return form_errors(request, errors, OUTGOING_FIELDS, not_done="Not saved")
        with ctx.db.read() as s:
            stored = outgoing_svc.system_out(outgoing_svc.get_settings_row(s)).model_dump()
        skip = ("smtp_password", "ca_bundle")
        values = {**stored, **{k: v for k, v in data.items() if k not in skip}}
        return _outgoing_page(request, values, errors, 422)
    flash(request, "Saved the database outgoing settings.")
    return redirect(request, "/admin/outgoing")


@router.post("/outgoing/test")
async def outgoing_test(request: Request, ctx: WebCtx, admin: WebAdmin, form: Form) -> Response:
    refused = await test_refused(ctx, admin)
    if refused is not None:
        return refused_result(request, refused, OUTGOING_FIELDS)
    data, errors = _outgoing_input(form)
    result = None
    if not errors:
        try:
            result = await connection_test.check_system_outgoing(
                ctx, admin, SystemOutgoingIn.model_validate(data)
            )
        except (ValidationError, ValidationFailed) as exc:
            errors = field_errors(exc)
    return page(
        request,
        "_test_result.html",
        {
            "result": result,
            "errors": errors,
            "fields": OUTGOING_FIELDS,
            "tls_offer": data["tls"] == "auto",
        },
    )


@router.post("/outgoing/send-test")
async def outgoing_send_test(
    request: Request, ctx: WebCtx, admin: WebAdmin, form: Form
) -> Response:
    """Send one real test message to the address typed, with the settings as typed (not
    saved); answers the result for #send-test-result."""
    refused = await test_refused(ctx, admin)
    if refused is not None:
        return refused_result(request, refused, ())
    data, errors = _outgoing_input(form)
    to = text(form, "test_to")
    if not to:
        errors["test_to"] = "enter the address the test message should go to"
    result = None
    if not errors:
        try:
            model = SystemOutgoingTest.model_validate({**data, "to": to})
            result = await connection_test.send_system_test(ctx, admin, to, model)
        except (ValidationError, ValidationFailed) as exc:
            errors = {("test_to" if k == "to" else k): v for k, v in field_errors(exc).items()}
    return page(
        request,
        "_test_result.html",
        {
            "result": result,
            "errors": errors,
            "fields": (*OUTGOING_FIELDS, "test_to"),
            "sent_to": to,
        },
    )


@router.get("/users")
def users_page(request: Request, ctx: WebCtx, admin: WebAdmin) -> Response:
    return _users(request, ctx, admin, {}, {})


def _users(
    request: Request,
    ctx: WebCtx,
    admin: Any,
    values: dict[str, str],
    errors: dict[str, str],
    created: dict[str, str] | None = None,
    status_code: int = 200,
    reset: dict[str, str] | None = None,
) -> Response:
    with ctx.db.read() as s:
        users = [
            {
                "id": u.id,
                "email": u.email,
                "name": u.name,
                "role": u.role,
                "disabled": u.disabled,
                "created_at": u.created_at,
            }
            for u in user_svc.list_users(s, admin)
        ]
    return page(
        request,
        "admin/users.html",
        {
            "users": users,
            "v": values,
            "errors": errors,
            "created": created,
            "reset": reset,
        },
        status_code=status_code,
        # A generated password may be on this page: never cached.
        headers={"Cache-Control": "no-store"},
    )


@router.post("/users")
def users_add(request: Request, ctx: WebCtx, admin: WebAdmin, form: Form) -> Response:
    values = {
        "email": text(form, "email"),
        "name": text(form, "name"),
        "role": "admin" if text(form, "role") == "admin" else "user",
    }
    password = raw_text(form, "password")
    generated = not password
    if generated:
        password = user_svc.generate_password()
    try:
        data = UserCreate(
            email=values["email"],
            name=values["name"],
            role=values["role"],
            password=SecretStr(password),
        )
        with ctx.db.write() as s:
            user = user_svc.create_user(s, data, admin)
            email = user.email
    except (ValidationError, ValidationFailed) as exc:
        return _users(request, ctx, admin, values, field_errors(exc), status_code=422)
    # A generated password is shown once, on this page only (never in a cookie or a log).
    created = {"email": email, "password": password if generated else ""}
    return _users(request, ctx, admin, {}, {}, created)


USER_ACTIONS: dict[str, dict[str, Any]] = {
    "disable": {"disabled": True},
    "enable": {"disabled": False},
    "make-admin": {"role": "admin"},
    "make-user": {"role": "user"},
}


@router.post("/users/{user_id}")
def users_change(
    request: Request, ctx: WebCtx, admin: WebAdmin, user_id: ObjectId, form: Form
) -> Response:
    """One action from the users table: disable, enable, change the role, reset the password
    (a generated one, shown once on the answer)."""
    action = text(form, "action")
    generated = user_svc.generate_password() if action == "reset-password" else None
    changes: dict[str, Any] = {"password": SecretStr(generated)} if generated else {}
    changes.update(USER_ACTIONS.get(action, {}))
    if not changes:
        known = ", ".join(["reset-password", *USER_ACTIONS])
        return _users(request, ctx, admin, {}, {"action": f"choose one of: {known}"},
                      status_code=422)  # fmt: skip
    try:
        with ctx.db.write() as s:
            email = accounts.update_user(s, admin, user_id, UserPatch(**changes)).email
    except NotFound:
        raise PageNotFound() from None
    except ValidationFailed as exc:
        problems = field_errors(exc)
        return _users(request, ctx, admin, {}, {"action": "; ".join(problems.values())},
                      status_code=422)  # fmt: skip
    if generated:
        return _users(request, ctx, admin, {}, {}, reset={"email": email, "password": generated})
    flash(request, f"Saved the change to {email}.")
    return redirect(request, "/admin/users")


# --- sign-in apps (OAuth clients) ------------------------------------------------------------


def _oauth_views(ctx: WebCtx) -> list[dict[str, Any]]:
    """Each provider as the page shows it: the secret only as set / not set."""
    with ctx.db.read() as s:
        clients = oauth_svc.list_clients(s, ctx.settings.base_url)
    return [
        {
            **c.model_dump(),
            "discovery_url": c.discovery_url or "",
            "tenant": c.tenant or "",
            "smtp_server": c.smtp_server or "",
            "imap_server": c.imap_server or "",
        }
        for c in clients
    ]


def _oauth_page(
    request: Request,
    ctx: WebCtx,
    provider: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """One provider's page; after a failed save, what was typed (never the secret)."""
    providers = _oauth_views(ctx)
    view = next(p for p in providers if p["provider"] == provider)
    return page(
        request,
        "admin/oauth.html",
        {"p": {**view, **(values or {})}, "providers": providers, "errors": errors or {}},
        status_code=status_code,
    )


def _oauth_input(form: FormData, provider: str) -> tuple[dict[str, str], dict[str, Any]]:
    """What was typed (to show again) and the OAuthClientIn input: an empty secret field
    keeps the stored secret, empty tenant and discovery URL mean the defaults."""
    values = {
        "client_id": text(form, "client_id"),
        "tenant": text(form, "tenant") if provider == "microsoft" else "",
        "discovery_url": text(form, "discovery_url"),
        "smtp_server": text(form, "smtp_server"),
        "imap_server": text(form, "imap_server"),
    }
    data: dict[str, Any] = {"client_id": values["client_id"]}
    secret = raw_text(form, "client_secret").strip()
    if secret:
        data["client_secret"] = secret
    for name in ("tenant", "discovery_url", "smtp_server", "imap_server"):
        if values[name]:
            data[name] = values[name]
    return values, data


@router.get("/oauth")
def oauth_index(request: Request, admin: WebAdmin) -> Response:
    return RedirectResponse(f"/admin/oauth/{PROVIDER_NAMES[0]}", status_code=303)


@router.get("/oauth/{provider}")
def oauth_page(request: Request, ctx: WebCtx, admin: WebAdmin, provider: str) -> Response:
    if provider not in PROVIDER_NAMES:
        raise PageNotFound()
    return _oauth_page(request, ctx, provider)


@router.post("/oauth/{provider}")
def oauth_save(
    request: Request, ctx: WebCtx, admin: WebAdmin, form: Form, provider: str
) -> Response:
    if provider not in PROVIDER_NAMES:
        raise PageNotFound()
    values, data = _oauth_input(form, provider)
    errors: dict[str, str] = {}
    # Both missing fields at once, in words for a person (the model stops at the first).
    if not values["client_id"]:
        errors["client_id"] = "is required: copy it from the provider's console"
    if "client_secret" not in data:
        with ctx.db.read() as s:
            if not oauth_svc.is_configured(s, provider):
                errors["client_secret"] = "is required: copy it from the provider's console"
    try:
        model = OAuthClientIn.model_validate(data)
        if not errors:
            with ctx.db.write() as s:
                oauth_svc.configure_client(s, admin, provider, model, ctx.secrets)
    except (ValidationError, ValidationFailed) as exc:
        errors = {**field_errors(exc), **errors}
    if errors:
        return _oauth_page(request, ctx, provider, values=values, errors=errors, status_code=422)
    label = get_provider(provider).label
    flash(request, f"Saved the {label} app. Users can now sign in with {label}.")
    return redirect(request, f"/admin/oauth/{provider}")
