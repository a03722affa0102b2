"""The suppression list: addresses a user's form letters skip.

Entries come from hard bounces (written by the bounce scanner) or are added by the user;
the user may remove either kind. Addresses are kept in lower case with a Unicode domain
(:func:`sendas.addresses.mailbox_key`), so ``Ann@Example.org`` and ``ann@example.org`` are
one entry, and so are ``ann@bücher.example`` and ``ann@xn--bcher-kva.example``. Single
emails (compose, the API's messages) are not checked against the list: the sender named the
recipient on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sendas.addresses import mailbox_key, spellings
from sendas.db.models import Suppression
from sendas.errors import FieldProblem, NotFound, ValidationFailed
from sendas.schemas import SuppressionIn, SuppressionOut, SuppressionPage
from sendas.services.common import Actor, audit

MAX_LIMIT = 200
# Addresses per lookup: well under SQLite's and PostgreSQL's bound-parameter limits.
LOOKUP_CHUNK = 500


def normalise(address: str) -> str:
    """The form an address is stored and compared in."""
    return mailbox_key(address)


def suppression_out(row: Suppression) -> SuppressionOut:
    return SuppressionOut(
        id=row.id,
        address=row.address,
        source="manual" if row.source == "manual" else "bounce",
        reason=row.reason,
        message_id=row.message_id,
        created_at=row.created_at,
    )


def list_suppressions(
    session: Session,
    actor: Actor,
    *,
    q: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> SuppressionPage:
    """The actor's entries, newest first; ``q`` searches the address (case-insensitive),
    ``before_id`` continues after a page, ``limit`` is kept within 1..200."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = (
        select(Suppression)
        .where(Suppression.user_id == actor.id)
        .order_by(Suppression.id.desc())
        .limit(limit)
    )
    if q and q.strip():
        needle = normalise(q)
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(Suppression.address.like(pattern, escape="\\"))
    if before_id is not None:
        query = query.where(Suppression.id < before_id)
    items = [suppression_out(r) for r in session.scalars(query)]
    return SuppressionPage(
        items=items, next_before_id=items[-1].id if len(items) == limit else None
    )


def add_suppression(session: Session, actor: Actor, data: SuppressionIn) -> Suppression:
    """Add an address by hand. Raises :class:`ValidationFailed` for ``address`` when it is
    on the list already (whatever put it there): nothing is written."""
    address = normalise(data.address)
    listed = ValidationFailed(
        [FieldProblem(("body", "address"), "this address is on your suppression list already")]
    )
    if find(session, actor.id, address) is not None:
        raise listed
    row = Suppression(
        user_id=actor.id, address=address, source="manual", reason=data.reason or None
    )
    try:  # a bounce (or a second click) may have listed it meanwhile: the same answer
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise listed from None
    audit(session, actor, "suppression.add", "suppression", row.id, owner_id=actor.id)
    return row


def remove_suppression(session: Session, actor: Actor, suppression_id: int) -> Suppression:
    """Remove one of the actor's entries; later form letters go to the address again.
    Raises :class:`NotFound` for an unknown id or another user's entry."""
    row = session.get(Suppression, suppression_id)
    if row is None or row.user_id != actor.id:
        raise NotFound("suppression", suppression_id)
    session.delete(row)
    audit(session, actor, "suppression.remove", "suppression", row.id, owner_id=actor.id)
    return row


def find(session: Session, user_id: int, address: str) -> Suppression | None:
    """The user's entry for ``address`` (any case, either spelling of its domain), or None."""
    return session.scalars(
        select(Suppression)
        .where(Suppression.user_id == user_id, Suppression.address.in_(spellings(address)))
        .order_by(Suppression.id)
        .limit(1)
    ).first()


def has_any(session: Session, user_id: int) -> bool:
    """Whether the user has any entry: a letter from a user with none needs no lookups."""
    return bool(session.scalar(select(exists().where(Suppression.user_id == user_id))))


def whole_list(session: Session, user_id: int, at_most: int) -> set[str] | None:
    """Every address on the user's list when there are at most ``at_most`` (one query,
    bounded memory), else None: the caller then asks :func:`suppressed_among` per chunk."""
    rows = list(
        session.scalars(
            select(Suppression.address).where(Suppression.user_id == user_id).limit(at_most + 1)
        )
    )
    return None if len(rows) > at_most else {normalise(a) for a in rows}


def suppressed_among(session: Session, user_id: int, addresses: Iterable[str]) -> set[str]:
    """Which of ``addresses`` are on the user's list, as :func:`normalise` keys (compare
    with it). One indexed query per :data:`LOOKUP_CHUNK` distinct spellings."""
    wanted = sorted({s for a in addresses for s in spellings(a)})
    found: set[str] = set()
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        found.update(
            normalise(a)
            for a in session.scalars(
                select(Suppression.address).where(
                    Suppression.user_id == user_id, Suppression.address.in_(chunk)
                )
            )
        )
    return found
