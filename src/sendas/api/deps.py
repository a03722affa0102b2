"""Request dependencies: the app context, a write transaction, the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sendas.context import AppContext
from sendas.db.models import User
from sendas.errors import AuthenticationRequired, Forbidden
from sendas.services import quotas
from sendas.services import users as user_service
from sendas.services.common import Actor
from sendas.web.security import csrf_ok
from sendas.web.session_state import cookie_session_id, signed_in_user

_bearer = HTTPBearer(auto_error=False)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EARLY_USER = "sendas.api_user"  # scope key: the user found by authenticate_early()


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
    known = request.scope.get(EARLY_USER)
    if isinstance(known, User):  # authenticated already, before the body was read
        return known
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


async def authenticate_early(request: Request) -> User:
    """:func:`get_current_user` run before anything reads the request's body (see
    ``sendas.api.auth_first``); the dependency then returns the user found here.

    Raises AuthenticationRequired or Forbidden (a cookie session's write without CSRF).
    """
    creds = await _bearer(request)
    user = await run_in_threadpool(get_current_user, request, get_ctx(request), creds)
    request.scope[EARLY_USER] = user
    return user


def get_actor(user: CurrentUser) -> Actor:
    return Actor.of(user)


ActorDep = Annotated[Actor, Depends(get_actor)]


def get_admin(actor: ActorDep) -> Actor:
    actor.require_admin()
    return actor


AdminDep = Annotated[Actor, Depends(get_admin)]


def count_test(ctx: CtxDep, actor: ActorDep) -> None:
    """One Test Connection of the caller; 429 past ``SENDAS_TESTS_PER_MINUTE``."""
    quotas.take_test(ctx.db, actor, quotas.Limits.of(ctx.settings))


TestAllowed = Depends(count_test)
