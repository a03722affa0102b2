"""Downgrading past 0013..0015 keeps every row: on SQLite, where foreign keys are enforced,
a column dropped by copying the table (and dropping the old one) would cascade to the form
letter's messages or fail on the alias that links the IMAP account."""

from __future__ import annotations

from sqlalchemy import Engine, text

from sendas.db.engine import Database
from sendas.db.migrate import downgrade, upgrade
from sendas.db.models import Alias, Campaign, ImapAccount, Message, User


def _letter_with_messages(db: Database) -> None:
    """A user whose alias links an IMAP account, and a form letter of three messages."""
    with db.write() as s:
        user = User(email="ann@example.com", name="Ann")
        s.add(user)
        s.flush()
        account = ImapAccount(user_id=user.id, imap_host="imap.example.com", imap_port=993,
                              username="ann@example.com", files_sent_copy=True)  # fmt: skip
        s.add(account)
        s.flush()
        alias = Alias(user_id=user.id, description="Work", description_key="work",
                      from_address="ann@example.com", is_default=True,
                      imap_account_id=account.id)  # fmt: skip
        s.add(alias)
        s.flush()
        skips = {"count": 1, "addresses": ["x@example.org"]}
        letter = Campaign(
            user_id=user.id, alias_id=alias.id, subject="Hi", total=3, suppressed_skips=skips
        )
        s.add(letter)
        s.flush()
        s.add_all(
            Message(user_id=user.id, alias_id=alias.id, campaign_id=letter.id,
                    lane=f"alias:{alias.id}", kind="campaign", status="queued",
                    envelope_from="ann@example.com", recipients=[f"r{i}@example.org"])
            for i in range(3)
        )  # fmt: skip


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("users", "imap_accounts", "aliases", "campaigns", "messages")
        }


def test_downgrade_to_0011_keeps_letters_messages_and_linked_accounts(engine: Engine) -> None:
    upgrade(engine)
    _letter_with_messages(Database(engine))
    before = _counts(engine)
    assert before == {"users": 1, "imap_accounts": 1, "aliases": 1, "campaigns": 1, "messages": 3}

    downgrade(engine, "0011")
    assert _counts(engine) == before
    with engine.connect() as conn:
        linked = conn.execute(text("SELECT imap_account_id FROM aliases")).scalar_one()
    assert linked is not None

    upgrade(engine)  # and up again: the dropped columns come back empty
    assert _counts(engine) == before
