"""Message bodies are packed at rest and read as the bytes written, on SQLite and
PostgreSQL; rows written before packing read as they are, and going back past 0017
unpacks every body for the older code."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine, text

from sendas.db.engine import Database
from sendas.db.migrate import downgrade, upgrade
from sendas.db.models import Message, MessageBody
from sendas.db.packing import TAG, Packed, pack, unpack
from sendas.outbox.tables import store_raw


def prose_message(seed: int) -> bytes:
    """A ~5 KB message of varied text, which zlib shrinks about as much as English."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("etaoinshrdlucmfwyp") for _ in range(rng.randint(1, 9)))
             for _ in range(400)]  # fmt: skip
    body = " ".join(rng.choice(words) for _ in range(900)).encode()
    return b"Subject: Figures\r\nMessage-ID: <%d@example.com>\r\n\r\n%s\r\n" % (seed, body)


def stored(engine: Engine, message_id: int) -> bytes:
    """The column's bytes as the database holds them."""
    with engine.connect() as conn:
        q = text("SELECT raw FROM message_bodies WHERE message_id = :id")
        return bytes(conn.execute(q, {"id": message_id}).scalar_one())


def add_messages(db: Database, raws: list[bytes]) -> list[int]:
    with db.write() as s:
        rows = [Message(lane="system", kind="single", envelope_from="a@example.com",
                        recipients=["b@example.org"], body=MessageBody(raw=raw))
                for raw in raws]  # fmt: skip
        s.add_all(rows)
        s.flush()
        return [m.id for m in rows]


def read_raw(db: Database, message_id: int) -> bytes | None:
    with db.read() as s:
        return s.get_one(Message, message_id).raw


@pytest.mark.parametrize(
    "data", [b"", b"\x00starts with the tag", bytes(range(256)) * 40, prose_message(1)]
)
def test_pack_round_trips_any_bytes(data: bytes) -> None:
    packed = pack(data)
    assert isinstance(packed, Packed) and packed[:1] == TAG
    assert unpack(packed) == data


def test_bodies_are_packed_at_rest_and_read_as_written(engine: Engine) -> None:
    upgrade(engine)
    db = Database(engine)
    first, second = prose_message(1), prose_message(2)
    ids = add_messages(db, [first, second])

    at_rest = stored(engine, ids[0])
    assert at_rest[:1] == TAG and len(at_rest) < 0.6 * len(first)
    assert read_raw(db, ids[0]) == first

    # A body packed where it was rendered is written as it is, not packed twice.
    with db.write() as s:
        store_raw(s, {ids[1]: pack(first)})
    assert stored(engine, ids[1]) == pack(first)
    assert read_raw(db, ids[1]) == first


def test_plain_bodies_read_as_they_are_and_going_back_unpacks(engine: Engine) -> None:
    upgrade(engine, "0016")
    db = Database(engine)
    plain = prose_message(3)
    with engine.begin() as conn:
        legacy = conn.execute(
            text("INSERT INTO messages (lane, kind, status, envelope_from, recipients, "
                 "to_addrs, cc_addrs, bcc_addrs, subject, message_id, attempts, "
                 "next_attempt_at, created_at, updated_at) VALUES ('system', 'single', "
                 "'queued', 'a@example.com', '[\"b@example.org\"]', '[]', '[]', '[]', 'Hi', "
                 "'', 0, :now, :now, :now) RETURNING id"),
            {"now": "2026-01-01"},
        ).scalar_one()  # fmt: skip
        conn.execute(
            text("INSERT INTO message_bodies (message_id, raw) VALUES (:id, :raw)"),
            {"id": legacy, "raw": plain},
        )
    upgrade(engine)
    assert stored(engine, legacy) == plain and read_raw(db, legacy) == plain
    packed_ids = add_messages(db, [prose_message(i) for i in range(4, 8)])
    assert all(stored(engine, i)[:1] == TAG for i in packed_ids)

    downgrade(engine, "0016")
    assert stored(engine, legacy) == plain
    assert [stored(engine, i) for i in packed_ids] == [prose_message(i) for i in range(4, 8)]
