"""Users, passwords (argon2) and API tokens (stored as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import secrets as pysecrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sendas.db.models import ApiToken, User, utcnow
from sendas.errors import AuthenticationRequired, NotFound, ValidationFailed
from sendas.schemas import UserCreate
from sendas.services.common import Actor, audit

_hasher = PasswordHasher()
TOKEN_PREFIX = "sas_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_password() -> str:
    return pysecrets.token_urlsafe(15)


def create_user(session: Session, data: UserCreate, actor: Actor | None = None) -> User:
    """Create a user; raises ValidationFailed when the email is taken."""
    if actor is not None:
        actor.require_admin()
    email = data.email.lower()
    if session.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
        raise ValidationFailed.one("email", "a user with this email already exists")
    user = User(
        email=email,
        name=data.name,
        role=data.role,
        password_hash=_hasher.hash(data.password.get_secret_value()) if data.password else None,
    )
    session.add(user)
    session.flush()
    audit(
        session, actor, "user.create", "user", user.id, owner_id=user.id, detail={"role": user.role}
    )
    return user


def set_password(session: Session, user: User, password: str) -> None:
    user.password_hash = _hasher.hash(password)


def list_users(session: Session, actor: Actor) -> list[User]:
    actor.require_admin()
    return list(session.scalars(select(User).order_by(User.id)))


def get_user_by_email(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None:
        raise NotFound("user", email)
    return user


def verify_login(session: Session, email: str, password: str) -> User:
    """Return the user whose email and password match; raises AuthenticationRequired."""
    user = session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None or not user.password_hash:
        # Spend the same time as a real check, so timing does not reveal which emails exist.
        _hasher.hash(password or "x")
        raise AuthenticationRequired("wrong email or password")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise AuthenticationRequired("wrong email or password") from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def create_token(session: Session, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Create an API token; the plain token is returned once and stored only as a hash."""
    token = TOKEN_PREFIX + pysecrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=hash_token(token), name=name)
    session.add(row)
    session.flush()
    audit(
        session,
        Actor.of(user),
        "token.create",
        "token",
        row.id,
        owner_id=user.id,
        detail={"name": name},
    )
    return row, token


def user_for_token(session: Session, token: str) -> User:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        raise AuthenticationRequired("invalid token")
    return row.user


def touch_token(session: Session, token: str) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is not None:
        row.last_used_at = utcnow()


def has_admin(session: Session) -> bool:
    return session.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None
