"""Account changes that end sessions: own password, an admin's disable / role / reset, and
API tokens listed and revoked.

Disabling a user ends their web sessions, makes their tokens fail (checked on every use)
and holds their aliases' lanes, so queued mail waits, neither sent nor lost, until the user
is enabled again.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import Alias, ApiToken, User
from sendas.errors import NotFound, ValidationFailed
from sendas.outbox.lanes import alias_lane, hold_lanes, release_held
from sendas.schemas import PasswordChange, UserPatch
from sendas.services import sessions
from sendas.services import users as user_svc
from sendas.services.common import Actor, audit

OWNER_DISABLED = "the owner's account is disabled: queued mail waits until it is enabled again"


# --- own password ------------------------------------------------------------------------


def change_own_password(
    db: Database, actor: Actor, data: PasswordChange, *, keep_session: object = None
) -> None:
    """Check the current password (argon2 with no transaction open), store the new one and
    end the user's other web sessions (``keep_session``: the cookie id making the change).

    Raises ValidationFailed on ``current_password`` when it is wrong. API tokens stay: they
    are listed, and revoked one by one, on the account page.
    """
    with db.read() as s:
        stored = s.scalar(select(User.password_hash).where(User.id == actor.id))
    if not user_svc.password_matches(stored, data.current_password.get_secret_value()):
        raise ValidationFailed.one("current_password", "is not your current password")
    new_hash = user_svc.hash_password(data.new_password.get_secret_value())
    with db.write() as s:
        # Compare-and-set: a change made meanwhile (another tab, an admin) wins.
        changed = s.execute(
            update(User)
            .where(User.id == actor.id, User.password_hash == stored)
            .values(password_hash=new_hash)
        )
        if not getattr(changed, "rowcount", 0):
            raise ValidationFailed.one("current_password", "is not your current password")
        ended = sessions.end_all(s, actor.id, except_id=keep_session)
        audit(
            s,
            actor,
            "user.password_change",
            "user",
            actor.id,
            owner_id=actor.id,
            detail={"sessions_ended": ended},
        )


# --- an admin's changes ----------------------------------------------------------------------


def _other_active_admins(session: Session, user_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(User.id)).where(
                User.role == "admin", User.disabled.is_(False), User.id != user_id
            )
        )
        or 0
    )


def _check_last_admin(session: Session, user: User, data: UserPatch) -> None:
    """An admin cannot disable or demote the last active admin: nobody could undo it."""
    if not user.is_admin or user.disabled or _other_active_admins(session, user.id):
        return
    if data.disabled:
        raise ValidationFailed.one("disabled", "the last active admin cannot be disabled")
    if data.role == "user":
        raise ValidationFailed.one("role", "the last active admin cannot lose the admin role")


def _alias_lanes(session: Session, user_id: int) -> list[str]:
    return [
        alias_lane(i) for i in session.scalars(select(Alias.id).where(Alias.user_id == user_id))
    ]


def set_disabled(session: Session, actor: Actor, user: User, disabled: bool) -> None:
    if disabled == user.disabled:
        return
    user.disabled = disabled
    if disabled:
        sessions.end_all(session, user.id)
        hold_lanes(session, _alias_lanes(session, user.id), OWNER_DISABLED)
    else:
        release_held(session, _alias_lanes(session, user.id))
    action = "user.disable" if disabled else "user.enable"
    audit(session, actor, action, "user", user.id, owner_id=user.id)


def update_user(session: Session, actor: Actor, user_id: int, data: UserPatch) -> User:
    """Apply an admin's changes (all or nothing); raises NotFound, ValidationFailed.

    A password reset ends all the user's web sessions; their API tokens stay."""
    actor.require_admin()
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    _check_last_admin(session, user, data)
    if data.role is not None and data.role != user.role:
        audit(
            session,
            actor,
            "user.role",
            "user",
            user.id,
            owner_id=user.id,
            detail={"from": user.role, "to": data.role},
        )
        user.role = data.role
    if data.disabled is not None:
        set_disabled(session, actor, user, data.disabled)
    if data.password is not None:
        user.password_hash = user_svc.hash_password(data.password.get_secret_value())
        sessions.end_all(session, user.id)
        audit(session, actor, "user.password_reset", "user", user.id, owner_id=user.id)
    session.flush()
    return user


# --- API tokens --------------------------------------------------------------------------


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
    )


def revoke_token(session: Session, actor: Actor, token_id: int) -> None:
    """Delete one of the actor's tokens (the operator: anyone's); NotFound otherwise."""
    row = session.get(ApiToken, token_id)
    if row is None or (row.user_id != actor.id and not actor.is_operator):
        raise NotFound("token", token_id)
    audit(
        session,
        actor,
        "token.revoke",
        "token",
        row.id,
        owner_id=row.user_id,
        detail={"name": row.name},
    )
    session.delete(row)
