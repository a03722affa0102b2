"""Started sign-ins, kept server-side until their callback: found by the SHA-256 of their
``state``, taken (deleted) on first read so a state works once, expired ones purged."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sendas.db.models import PendingSignIn, utcnow
from sendas.oauth.errors import InvalidState
from sendas.oauth.flow import PendingAuthorization
from sendas.oauth.providers import get_provider
from sendas.secrets import SecretBox


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def save_pending(session: Session, pending: PendingAuthorization, box: SecretBox) -> None:
    """Keep ``pending`` until its callback (and drop the expired ones on the way)."""
    purge_expired(session)
    session.add(
        PendingSignIn(
            state_hash=state_hash(pending.state),
            user_id=pending.user_id,
            alias_id=pending.alias_id,
            provider=pending.provider,
            code_verifier_enc=box.encrypt(pending.code_verifier),
            nonce_enc=box.encrypt(pending.nonce),
            redirect_uri=pending.redirect_uri,
            imap=pending.imap,
            expires_at=datetime.fromtimestamp(pending.expires_at, UTC),
        )
    )


def take_pending(
    session: Session, state: str, box: SecretBox, *, user_id: int
) -> PendingAuthorization:
    """The sign-in ``user_id`` started with ``state``, removed from the store (used once).
    An expired one is returned too: :func:`sendas.oauth.finish_sign_in` refuses it.

    Raises InvalidState when no such sign-in is waiting (unknown, or already used), or when
    another user started it (then it stays: whoever presents a stolen state burns nothing).
    """
    if not state:
        raise InvalidState("the answer carries no sign-in state")
    row = session.scalar(
        select(PendingSignIn).where(PendingSignIn.state_hash == state_hash(state)).with_for_update()
    )
    if row is None:
        raise InvalidState("the sign-in request is unknown or was already used")
    if row.user_id != user_id:
        raise InvalidState("the sign-in request was started by another user")
    session.delete(row)
    session.flush()
    return PendingAuthorization(
        provider=get_provider(row.provider).name,
        state=state,
        nonce=box.decrypt(row.nonce_enc).get_secret_value(),
        code_verifier=box.decrypt(row.code_verifier_enc),
        redirect_uri=row.redirect_uri,
        user_id=row.user_id,
        alias_id=row.alias_id,
        imap=row.imap,
        expires_at=row.expires_at.timestamp(),
    )


def purge_expired(session: Session, now: datetime | None = None) -> None:
    session.execute(delete(PendingSignIn).where(PendingSignIn.expires_at < (now or utcnow())))


__all__ = ["purge_expired", "save_pending", "state_hash", "take_pending"]
