"""Users and API tokens: /api/me, /api/me/password, /api/users (admin), /api/tokens."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from sendas.api.deps import ActorDep, AdminDep, CtxDep
from sendas.db.models import ApiToken, User
from sendas.errors import ValidationFailed
from sendas.schemas import (
    PasswordChange,
    TokenCreate,
    TokenInfo,
    TokenOut,
    UserCreate,
    UserOut,
    UserPatch,
)
from sendas.schemas.fields import ObjectId
from sendas.services import accounts
from sendas.services import users as svc
from sendas.web.security import password_guard
from sendas.web.session_state import cookie_session_id

router = APIRouter(tags=["users"])


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        disabled=user.disabled,
        created_at=user.created_at,
    )


def token_info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


@router.get("/me")
def me(ctx: CtxDep, actor: ActorDep) -> UserOut:
    with ctx.db.read() as s:
        user = s.get(User, actor.id)
        assert user is not None
        return user_out(user)


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(
    request: Request, ctx: CtxDep, actor: ActorDep, body: PasswordChange
) -> Response:
    """Change your own password (the current one is required). Your other web sessions
    end; the one making the change and your API tokens stay. Wrong current passwords are
    throttled like failed log-ins (429 with Retry-After)."""
    throttle, client = password_guard(request)
    wait = throttle.retry_after(client, actor.email)
    if wait:
        raise HTTPException(429, "too many attempts", headers={"Retry-After": str(wait)})
    try:
        accounts.change_own_password(ctx.db, actor, body, keep_session=cookie_session_id(request))
    except ValidationFailed:
        throttle.failed(client, actor.email)
        raise
    throttle.succeeded(client, actor.email)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users")
def list_users(ctx: CtxDep, actor: AdminDep) -> list[UserOut]:
    with ctx.db.read() as s:
        return [user_out(u) for u in svc.list_users(s, actor)]


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(ctx: CtxDep, actor: AdminDep, body: UserCreate) -> UserOut:
    with ctx.db.write() as s:
        return user_out(svc.create_user(s, body, actor))


@router.patch("/users/{user_id}")
def update_user(ctx: CtxDep, actor: AdminDep, user_id: ObjectId, body: UserPatch) -> UserOut:
    """Disable or enable a user, change their role, or reset their password. Disabling
    ends their sessions, stops their tokens and holds their queued mail (not lost)."""
    with ctx.db.write() as s:
        return user_out(accounts.update_user(s, actor, user_id, body))


@router.get("/tokens")
def list_tokens(ctx: CtxDep, actor: ActorDep) -> list[TokenInfo]:
    with ctx.db.read() as s:
        return [token_info(t) for t in accounts.list_tokens(s, actor.id)]


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(ctx: CtxDep, actor: ActorDep, body: TokenCreate) -> TokenOut:
    with ctx.db.write() as s:
        user = s.get(User, actor.id)
        assert user is not None
        row, token = svc.create_token(s, user, body.name, body.expires_at)
        return TokenOut(**token_info(row).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(ctx: CtxDep, actor: ActorDep, token_id: ObjectId) -> Response:
    with ctx.db.write() as s:
        accounts.revoke_token(s, actor, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
