"""Page dependencies: the logged-in user (else a redirect to the log-in page) and CSRF."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from sendas.context import AppContext
from sendas.db.models import User
from sendas.errors import AuthenticationRequired
from sendas.services import users as user_service
from sendas.services.common import Actor
from sendas.web.security import csrf_ok
from sendas.web.session_state import forget, signed_in_user


class LoginRequired(Exception):
    """No session: the page redirects to /login and comes back afterwards."""


class SetupRequired(Exception):
    """The database has no admin yet: every page leads to the first-run page."""


class CsrfRefused(Exception):
    """A write without the session's CSRF token."""


class PageNotFound(Exception):
    """Shown as the HTML 404 page."""


def web_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


WebCtx = Annotated[AppContext, Depends(web_ctx)]


def admin_exists(request: Request, ctx: AppContext) -> bool:
    """Cached once true: an admin, once created, is never the last one to go away here."""
    if getattr(request.app.state, "web_has_admin", False):
        return True
    with ctx.db.read() as s:
        found = user_service.has_admin(s)
    request.app.state.web_has_admin = found
    return found


def web_user(request: Request, ctx: WebCtx) -> User:
    if not admin_exists(request, ctx):
        raise SetupRequired()
    try:
        user = signed_in_user(request, ctx)
    except AuthenticationRequired:
        forget(request)  # logged out, ended elsewhere, expired or disabled
        raise LoginRequired() from None
    request.state.web_user = user
    return user


WebUser = Annotated[User, Depends(web_user)]


def web_actor(user: WebUser) -> Actor:
    return Actor.of(user)


WebActor = Annotated[Actor, Depends(web_actor)]


def web_admin(request: Request, actor: WebActor) -> Actor:
    if not actor.is_admin:
        raise PageNotFound()  # like the API: do not reveal admin pages to others
    return actor


WebAdmin = Annotated[Actor, Depends(web_admin)]


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token (field or htmx header) matches the session's."""
    form = await request.form(max_files=20, max_fields=500)
    if not csrf_ok(request, form):
        raise CsrfRefused()
    return form


Form = Annotated[FormData, Depends(checked_form)]


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def raw_text(form: FormData, name: str) -> str:
    """Like ``text`` but keeps spaces (passwords, message bodies)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def checked(form: FormData, name: str) -> bool:
    return form.get(name) in ("on", "true", "1", "yes")
