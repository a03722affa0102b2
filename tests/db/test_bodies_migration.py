"""Migration 0012 moves the message bodies into ``message_bodies`` and back."""

from __future__ import annotations

import json

from sqlalchemy import Engine, text

from sendas.db.engine import Database
from sendas.db.migrate import downgrade, upgrade
from sendas.db.models import Message, MessageBody

RAW = b"Subject: Hi\r\n\r\nHello\r\n"
FIELDS = '{"first": "Zo\\u00eb"}'


def _messages(engine: Engine) -> list[int]:
    """A single email (bytes), a form letter's message not rendered yet (values), and one
    rendered (both), written as version 0011 stored them."""
    insert = text(
        "INSERT INTO messages (lane, kind, status, envelope_from, recipients, to_addrs, "
        "cc_addrs, bcc_addrs, subject, message_id, raw, merge_fields, attempts, "
        "next_attempt_at, created_at, updated_at) VALUES ('system', :kind, 'queued', "
        "'a@example.com', '[\"b@example.org\"]', '[]', '[]', '[]', 'Hi', '', :raw, "
        ":fields, 0, :now, :now, :now) RETURNING id"
    )
    rows = [("single", RAW, None), ("campaign", None, FIELDS), ("campaign", RAW, FIELDS)]
    with engine.begin() as conn:
        return [
            conn.execute(
                insert, {"kind": k, "raw": r, "fields": f, "now": "2026-01-01"}
            ).scalar_one()
            for k, r, f in rows
        ]


def test_bodies_move_to_their_table_and_back(engine: Engine) -> None:
    upgrade(engine, "0011")
    ids = _messages(engine)
    upgrade(engine)
    db = Database(engine)
    with db.read() as s:
        got = [(m.raw, m.merge_fields) for m in (s.get_one(Message, i) for i in ids)]
        assert s.query(MessageBody).count() == 3
    assert got == [(RAW, None), (None, {"first": "Zoë"}), (RAW, {"first": "Zoë"})]

    downgrade(engine, "0011")
    with engine.connect() as conn:
        back = conn.execute(text("SELECT raw, merge_fields FROM messages ORDER BY id")).all()
    assert [bytes(r) if r is not None else None for r, _ in back] == [RAW, None, RAW]
    assert [f if f is None or isinstance(f, dict) else json.loads(f)
            for _, f in back] == [None, {"first": "Zoë"}, {"first": "Zoë"}]  # fmt: skip
