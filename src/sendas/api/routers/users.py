"""Users and API tokens: /api/me, /api/users (admin), /api/tokens."""

from __future__ import annotations

from fastapi import APIRouter, status

from sendas.api.deps import ActorDep, AdminDep, CtxDep
from sendas.db.models import User
from sendas.schemas import TokenCreate, TokenOut, UserCreate, UserOut
from sendas.services import users as svc

router = APIRouter(tags=["users"])


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        created_at=user.created_at,
    )


@router.get("/me")
def me(ctx: CtxDep, actor: ActorDep) -> UserOut:
    with ctx.db.read() as s:
        user = s.get(User, actor.id)
        assert user is not None
        return user_out(user)


@router.get("/users")
def list_users(ctx: CtxDep, actor: AdminDep) -> list[UserOut]:
    with ctx.db.read() as s:
        return [user_out(u) for u in svc.list_users(s, actor)]


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(ctx: CtxDep, actor: AdminDep, body: UserCreate) -> UserOut:
    with ctx.db.write() as s:
        return user_out(svc.create_user(s, body, actor))


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(ctx: CtxDep, actor: ActorDep, body: TokenCreate) -> TokenOut:
    with ctx.db.write() as s:
        user = s.get(User, actor.id)
        assert user is not None
        row, token = svc.create_token(s, user, body.name)
        return TokenOut(id=row.id, name=row.name, token=token)
