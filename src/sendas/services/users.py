"""Users, passwords (argon2) and API tokens (stored as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import secrets as pysecrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import ApiToken, User, utcnow
from sendas.errors import AccountDisabled, AuthenticationRequired, NotFound, ValidationFailed
from sendas.schemas import UserCreate
from sendas.services.common import Actor, audit

_hasher = PasswordHasher()
TOKEN_PREFIX = "sas_"
# ``last_used_at`` is a hint for people, not an audit trail: a burst of requests with one
# token writes it once, not once per request.
TOKEN_TOUCH_EVERY = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


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


def password_matches(password_hash: str | None, password: str) -> bool:
    """The argon2 check; slow on purpose, so call it with no transaction open. Without a
    hash it spends the same time, so timing does not tell which emails exist."""
    if not password_hash:
        _hasher.hash(password or "x")
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_login(db: Database, email: str, password: str) -> int:
    """The id of the user whose email and password match; raises AuthenticationRequired
    (``AccountDisabled`` for a disabled user with the right password).

    The hash is read in a short read transaction, checked with none open (argon2 takes
    tens of milliseconds: other requests must not queue behind it for the database), then
    a rehash, if due, is written in its own short transaction.
    """
    with db.read() as s:
        found = s.execute(
            select(User.id, User.password_hash, User.disabled).where(
                func.lower(User.email) == email.strip().lower()
            )
        ).first()
    stored = found.password_hash if found is not None else None
    matches = password_matches(stored, password)  # also for unknown emails: same time
    if found is None or not matches:
        raise AuthenticationRequired("wrong email or password")
    if found.disabled:
        raise AccountDisabled("this account is disabled")
    if stored and _hasher.check_needs_rehash(stored):
        new_hash = _hasher.hash(password)
        with db.write() as s:
            s.execute(
                update(User)
                .where(User.id == found.id, User.password_hash == stored)
                .values(password_hash=new_hash)
            )
    return int(found.id)


def create_token(
    session: Session, user: User, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create an API token; the plain token is returned once and stored only as a hash."""
    token = TOKEN_PREFIX + pysecrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=hash_token(token), name=name, expires_at=expires_at)
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


def token_row(session: Session, token: str, now: datetime | None = None) -> ApiToken:
    """The API token (with its user loaded); raises AuthenticationRequired when unknown,
    revoked, expired, or its user is disabled."""
    now = now or utcnow()
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.user.disabled or (row.expires_at is not None and row.expires_at <= now):
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
