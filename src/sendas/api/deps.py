"""Request dependencies: the app context, a write transaction, the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sendas.context import AppContext
from sendas.db.models import User
from sendas.errors import AuthenticationRequired, Forbidden
from sendas.services import users as user_service
from sendas.services.common import Actor
from sendas.web.security import csrf_ok
from sendas.web.session_state import cookie_session_id, signed_in_user

_bearer = HTTPBearer(auto_error=False)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_current_user(
    request: Request,
    ctx: CtxDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """Bearer token first; else the web session cookie, with CSRF checked on writes.

    Handlers open their own write transaction (``ctx.db.write()``) so that a commit is
    done before the answer goes out.
    """
    if creds is not None:
        return _token_user(ctx, creds.credentials)
    return _session_user(request, ctx)


def _token_user(ctx: AppContext, token: str) -> User:
    """The token's user; ``last_used_at`` is stamped when older than a minute."""
    with ctx.db.read() as session:
        row = user_service.token_row(session, token)
        user, token_id, due = row.user, row.id, user_service.touch_due(row)
    if due:
        with ctx.db.write() as session:
            user_service.touch_token(session, token_id)
    return user


def _session_user(request: Request, ctx: AppContext) -> User:
    """The web session's user (a live server-side session, see web.session_state)."""
    if cookie_session_id(request) is None:
        raise AuthenticationRequired("a valid token is required")
    try:
        user = signed_in_user(request, ctx)
    except AuthenticationRequired:
        raise AuthenticationRequired("a valid token is required") from None
    if request.method not in SAFE_METHODS and not csrf_ok(request):
        raise Forbidden("missing or wrong CSRF token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_actor(user: CurrentUser) -> Actor:
    return Actor.of(user)


ActorDep = Annotated[Actor, Depends(get_actor)]


def get_admin(actor: ActorDep) -> Actor:
    actor.require_admin()
    return actor


AdminDep = Annotated[Actor, Depends(get_admin)]
