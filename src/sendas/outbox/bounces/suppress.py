"""Put a hard-bounced address on its owner's suppression list (``suppressions``).

The list's pages, API and form-letter skipping live in :mod:`sendas.services.suppressions`;
this is only the scanner's insert, kept here so the two do not depend on each other.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sendas.addresses import mailbox_key, spellings
from sendas.db.models import Suppression

SOURCE = "bounce"


def suppress_bounced(
    session: Session,
    user_id: int,
    address: str,
    reason: str,
    message_id: int | None,
    now: datetime,
) -> bool:
    """Add ``address`` (as its :func:`~sendas.addresses.mailbox_key`: lower case, Unicode
    domain) for ``user_id``; False when it is listed already, in either spelling of its
    domain (by a bounce or by hand: the first entry and its reason stay). Idempotent, so a
    bounce handled again after a UIDVALIDITY change adds nothing."""
    key = mailbox_key(address)
    existing = session.scalars(
        select(Suppression.id)
        .where(Suppression.user_id == user_id, Suppression.address.in_(spellings(address)))
        .limit(1)
    ).first()
    if existing is not None:
        return False
    row = Suppression(
        user_id=user_id,
        address=key,
        source=SOURCE,
        reason=reason[:2000],
        message_id=message_id,
        created_at=now,
    )
    # In a savepoint: an entry added meanwhile (by hand, or another worker) wins on the
    # unique key, and only this insert is undone, not the bounce being recorded.
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True
