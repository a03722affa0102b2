"""Users, passwords (argon2) and API tokens (stored as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import secrets as pysecrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from sendas.db.models import ApiToken, User, utcnow
from sendas.errors import AuthenticationRequired, NotFound, ValidationFailed
from sendas.schemas import UserCreate
from sendas.services.common import Actor, audit

_hasher = PasswordHasher()
TOKEN_PREFIX = "sas_"
# ``last_used_at`` is a hint for people, not an audit trail: a burst of requests with one
# token writes it once, not once per request.
TOKEN_TOUCH_EVERY = timedelta(minutes=1)


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


def token_row(session: Session, token: str) -> ApiToken:
    """The API token (with its user loaded); raises AuthenticationRequired when unknown."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        raise AuthenticationRequired("invalid token")
    return row


def touch_due(row: ApiToken, now: datetime | None = None) -> bool:
    """Whether ``last_used_at`` is older than TOKEN_TOUCH_EVERY (or was never written)."""
    now = now or utcnow()
    return row.last_used_at is None or row.last_used_at <= now - TOKEN_TOUCH_EVERY


def touch_token(session: Session, token_id: int, now: datetime | None = None) -> bool:
    """Record that the token was just used; True when this call wrote it.

    At most once per TOKEN_TOUCH_EVERY: requests that race past ``touch_due`` together
    find the fresh stamp in the WHERE clause and write nothing.
    """
    now = now or utcnow()
    stale = or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - TOKEN_TOUCH_EVERY)
    result = session.execute(
        update(ApiToken).where(ApiToken.id == token_id, stale).values(last_used_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


def has_admin(session: Session) -> bool:
    return session.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None
