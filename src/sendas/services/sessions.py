"""Server-side web sessions: the cookie names a row here, and only a live row signs anyone in.

The signed cookie alone proves nothing after log out: the row it names is gone. A password
change ends the user's other sessions, disabling a user ends all of them.
"""

from __future__ import annotations

import hashlib
import secrets as pysecrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from sendas.db.models import User, WebSession, utcnow
from sendas.errors import AuthenticationRequired

SESSION_LIFETIME = timedelta(days=14)
# ``last_seen_at`` is a hint, like a token's ``last_used_at``: written at most once a minute.
SEEN_EVERY = timedelta(minutes=1)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """The user a session cookie stands for, and whether ``last_seen_at`` is due."""

    user: User
    row_id: int
    seen_due: bool


def start(session: Session, user_id: int, keep: int, now: datetime | None = None) -> str:
    """A new session for the user; returns the id for the cookie (stored only hashed).

    Expired rows go, and the user's oldest sessions beyond ``keep`` end, so the table stays
    bounded whatever a client does."""
    now = now or utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    session_id = pysecrets.token_urlsafe(32)
    session.add(
        WebSession(
            id_hash=_hash(session_id),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    session.flush()
    newest = select(WebSession.id).where(WebSession.user_id == user_id)
    kept = newest.order_by(WebSession.id.desc()).limit(keep)
    session.execute(
        delete(WebSession).where(WebSession.user_id == user_id, WebSession.id.not_in(kept))
    )
    return session_id


def lookup(session: Session, session_id: object, now: datetime | None = None) -> SignedIn:
    """The signed-in user; raises AuthenticationRequired for an unknown, ended or expired
    session and for a disabled user."""
    if not isinstance(session_id, str) or not session_id:
        raise AuthenticationRequired("not signed in")
    now = now or utcnow()
    row = session.scalar(select(WebSession).where(WebSession.id_hash == _hash(session_id)))
    if row is None or row.expires_at <= now or row.user.disabled:
        raise AuthenticationRequired("not signed in")
    return SignedIn(row.user, row.id, row.last_seen_at <= now - SEEN_EVERY)


def touch(session: Session, row_id: int, now: datetime | None = None) -> None:
    """Record activity, at most once per SEEN_EVERY (racing requests write once)."""
    now = now or utcnow()
    session.execute(
        update(WebSession)
        .where(WebSession.id == row_id, WebSession.last_seen_at <= now - SEEN_EVERY)
        .values(last_seen_at=now)
    )


def end(session: Session, session_id: object) -> None:
    """Log out: the cookie's session ends (nothing happens for an unknown id)."""
    if isinstance(session_id, str) and session_id:
        session.execute(delete(WebSession).where(WebSession.id_hash == _hash(session_id)))


def end_all(session: Session, user_id: int, *, except_id: object = None) -> int:
    """End every session of the user but ``except_id`` (the one making the change);
    returns how many ended."""
    stmt = delete(WebSession).where(WebSession.user_id == user_id)
    if isinstance(except_id, str) and except_id:
        stmt = stmt.where(WebSession.id_hash != _hash(except_id))
    return int(getattr(session.execute(stmt), "rowcount", 0) or 0)
