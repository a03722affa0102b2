"""Log in, log out, and the first-run page that creates the admin."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import SecretStr, ValidationError

from sendas.errors import AuthenticationRequired, ValidationFailed
from sendas.schemas import UserCreate
from sendas.services import users as user_service
from sendas.web.deps import Form, WebCtx, WebUser, admin_exists, raw_text, text
from sendas.web.render import field_errors, page
from sendas.web.security import LoginThrottle, new_csrf_token

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only local paths: never bounce a user to another site after logging in."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/aliases"


def _start_session(request: Request, user_id: int) -> None:
    request.session.clear()  # a fresh session at log-in: no fixation
    request.session["user_id"] = user_id
    request.session["csrf"] = new_csrf_token()


@router.get("/")
def home(user: WebUser) -> Response:
    return RedirectResponse("/aliases", status_code=303)


@router.get("/login")
def login_page(request: Request, ctx: WebCtx, next: str = "/aliases") -> Response:
    if not admin_exists(request, ctx):
        return RedirectResponse("/setup", status_code=303)
    return page(request, "login.html", {"next": _safe_next(next), "email": "", "error": ""})


@router.post("/login")
def login(request: Request, ctx: WebCtx, form: Form) -> Response:
    email = text(form, "email")
    password = raw_text(form, "password")
    target = _safe_next(text(form, "next") or "/aliases")
    throttle: LoginThrottle = request.app.state.login_throttle
    ip = request.client.host if request.client else "?"
    wait = throttle.retry_after(ip, email)
    if wait:
        return page(
            request,
            "login.html",
            {
                "next": target,
                "email": email,
                "error": f"Too many attempts. Try again in {wait} seconds.",
            },
            status_code=429,
        )
    try:
        with ctx.db.write() as s:
            user = user_service.verify_login(s, email, password)
            user_id = user.id
    except AuthenticationRequired:
        throttle.failed(ip, email)
        return page(
            request,
            "login.html",
            {
                "next": target,
                "email": email,
                "error": "Wrong email or password.",
            },
            status_code=401,
        )
    throttle.succeeded(ip, email)
    _start_session(request, user_id)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request, form: Form) -> Response:
    request.session.clear()
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
    _start_session(request, user_id)
    return RedirectResponse("/aliases", status_code=303)
