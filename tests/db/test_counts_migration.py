"""Migration 0010 backfills the kept counts of the form letters already in the database."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.migrate import upgrade
from sendas.db.models import Alias, Campaign, Message, User
from sendas.outbox.counts import full_counts, read_counts


def add_owner(s: Session) -> tuple[User, Alias]:
    """A user with one default alias (work@example.com), flushed: their ids are known."""
    user = User(email="ann@example.com", name="Ann")
    s.add(user)
    s.flush()
    alias = Alias(user_id=user.id, description="Work", description_key="work",
                  from_address="work@example.com", is_default=True)  # fmt: skip
    s.add(alias)
    s.flush()
    return user, alias


def test_existing_letters_get_their_counts(engine: Engine) -> None:
    upgrade(engine, "0009")
    db = Database(engine)
    statuses = ["sent"] * 5 + ["failed"] * 2 + ["queued"] * 3 + ["unknown"]
    with db.write() as s:
        user, alias = add_owner(s)
        letters = [Campaign(user_id=user.id, alias_id=alias.id, subject="Hi", total=n)
                   for n in (len(statuses), 0)]  # fmt: skip
        s.add_all(letters)
        s.flush()
        s.add_all(
            Message(user_id=user.id, alias_id=alias.id, campaign_id=letters[0].id,
                    lane=f"alias:{alias.id}", kind="campaign", status=status,
                    envelope_from="work@example.com", recipients=[f"r{i}@example.org"])
            for i, status in enumerate(statuses)
        )  # fmt: skip
        ids = [c.id for c in letters]
    upgrade(engine)
    with db.read() as s:
        kept = read_counts(s, ids)
        assert {k: n for k, n in kept[ids[0]].items() if n} == full_counts(s, ids[0])
        assert full_counts(s, ids[0]) == {"sent": 5, "failed": 2, "queued": 3, "unknown": 1}
        assert set(kept[ids[1]]) >= {"queued", "sent"} and not any(kept[ids[1]].values())
