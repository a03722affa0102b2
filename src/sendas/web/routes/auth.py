"""Log in, log out, and the first-run page that creates the admin."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import SecretStr, ValidationError

from sendas.errors import AccountDisabled, AuthenticationRequired, ValidationFailed
from sendas.schemas import UserCreate
from sendas.services import users as user_service
from sendas.web import session_state
from sendas.web.deps import Form, WebCtx, WebUser, admin_exists, raw_text, text
from sendas.web.render import field_errors, page
from sendas.web.security import password_guard

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only local paths: never bounce a user to another site after logging in."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/aliases"


@router.get("/")
def home(user: WebUser) -> Response:
    return RedirectResponse("/aliases", status_code=303)


@router.get("/login")
def login_page(request: Request, ctx: WebCtx, next: str = "/aliases") -> Response:
    if not admin_exists(request, ctx):
        return RedirectResponse("/setup", status_code=303)
    return page(request, "login.html", {"next": _safe_next(next), "email": "", "error": ""})


def _login_refused(request: Request, target: str, email: str, error: str, status: int) -> Response:
    return page(
        request,
        "login.html",
        {"next": target, "email": email, "error": error},
        status_code=status,
    )


@router.post("/login")
def login(request: Request, ctx: WebCtx, form: Form) -> Response:
    email = text(form, "email")
    password = raw_text(form, "password")
    target = _safe_next(text(form, "next") or "/aliases")
    throttle, client = password_guard(request)
    wait = throttle.retry_after(client, email)
    if wait:
        message = f"Too many attempts. Try again in {wait} seconds."
        return _login_refused(request, target, email, message, 429)
    try:
        # No transaction is open while argon2 runs (see verify_login).
        user_id = user_service.verify_login(ctx.db, email, password)
    except AccountDisabled:
        message = "This account is disabled. Ask an administrator to enable it."
        return _login_refused(request, target, email, message, 401)
    except AuthenticationRequired:
        throttle.failed(client, email)
        return _login_refused(request, target, email, "Wrong email or password.", 401)
    throttle.succeeded(client, email)
    session_state.begin(request, ctx, user_id)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request, ctx: WebCtx, form: Form) -> Response:
    session_state.finish(request, ctx)
    return RedirectResponse("/login", status_code=303)


@router.get("/setup")
def setup_page(request: Request, ctx: WebCtx) -> Response:
    if admin_exists(request, ctx):
        return RedirectResponse("/login", status_code=303)
    return page(request, "setup.html", {"values": {}, "errors": {}})


@router.post("/setup")
def setup(request: Request, ctx: WebCtx, form: Form) -> Response:
    values = {"name": text(form, "name"), "email": text(form, "email")}
    password = raw_text(form, "password")
    errors: dict[str, str] = {}
    if password != raw_text(form, "password_again"):
        errors["password_again"] = "the two passwords differ"
    try:
        data = UserCreate(
            email=values["email"],
            name=values["name"],
            role="admin",
            password=SecretStr(password),
        )
    except ValidationError as exc:
        errors.update(field_errors(exc))
    if not errors:
        try:
            with ctx.db.write() as s:
                if user_service.has_admin(s):
                    return RedirectResponse("/login", status_code=303)
                user_id = user_service.create_user(s, data).id
        except ValidationFailed as exc:
            errors.update(field_errors(exc))
    if errors:
        return page(request, "setup.html", {"values": values, "errors": errors}, status_code=422)
    request.app.state.web_has_admin = True
    session_state.begin(request, ctx, user_id)
    return RedirectResponse("/aliases", status_code=303)
