"""Message bodies are packed at rest and read as the bytes written, on SQLite and
PostgreSQL; rows written before packing, or packed with zlib by 0017's code, read as they
are; going back past 0018 rewrites bodies as zlib ones, past 0017 as plain bytes. A form
letter's bodies are packed against its templates, and going back past 0021 unpacks them."""

from __future__ import annotations

import random
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard
from sqlalchemy import Engine, text

from sendas.db.engine import Database
from sendas.db.migrate import downgrade, upgrade
from sendas.db.models import Campaign, Message, MessageBody
from sendas.db.packing import (
    _CODECS_KEPT,
    _CONTEXTS,
    DICTIONARY_MAX,
    LETTER,
    ZLIB,
    ZSTD,
    LetterPacked,
    Packed,
    letter_dictionary,
    pack,
    pack_letter,
    unpack,
    unpack_letter,
)
from sendas.outbox.tables import store_raw
from tests.db.test_counts_migration import add_owner


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
    assert isinstance(packed, Packed) and packed[:1] == ZSTD
    assert unpack(packed) == data
    assert unpack(ZLIB + zlib.compress(data)) == data  # as 0017's code packed it


def test_threads_pack_and_unpack_at_once() -> None:
    """Render threads and API threads pack at the same moment: each has its own context
    (one shared would mix their streams)."""
    bodies = [prose_message(seed) for seed in range(64)]

    def round_trip(data: bytes) -> bool:
        return all(unpack(pack(data)) == data for _ in range(20))

    with ThreadPoolExecutor(8) as threads:
        assert all(threads.map(round_trip, bodies))


def test_bodies_are_packed_at_rest_and_read_as_written(engine: Engine) -> None:
    upgrade(engine)
    db = Database(engine)
    first, second = prose_message(1), prose_message(2)
    ids = add_messages(db, [first, second])

    at_rest = stored(engine, ids[0])
    assert at_rest[:1] == ZSTD and len(at_rest) < 0.6 * len(first)
    assert read_raw(db, ids[0]) == first

    # A body packed where it was rendered is written as it is, not packed twice.
    with db.write() as s:
        store_raw(s, {ids[1]: pack(first)})
    assert stored(engine, ids[1]) == pack(first)
    assert read_raw(db, ids[1]) == first


def insert_body(engine: Engine, raw: bytes) -> int:
    """A message whose body row holds ``raw`` as it is (an older version's write)."""
    with engine.begin() as conn:
        message_id: int = conn.execute(
            text("INSERT INTO messages (lane, kind, status, envelope_from, recipients, "
                 "to_addrs, cc_addrs, bcc_addrs, subject, message_id, attempts, "
                 "next_attempt_at, created_at, updated_at) VALUES ('system', 'single', "
                 "'queued', 'a@example.com', '[\"b@example.org\"]', '[]', '[]', '[]', 'Hi', "
                 "'', 0, :now, :now, :now) RETURNING id"),
            {"now": "2026-01-01"},
        ).scalar_one()  # fmt: skip
        conn.execute(
            text("INSERT INTO message_bodies (message_id, raw) VALUES (:id, :raw)"),
            {"id": message_id, "raw": raw},
        )
    return message_id


def test_older_rows_read_as_they_are_and_going_back_rewrites(engine: Engine) -> None:
    upgrade(engine, "0016")
    db = Database(engine)
    plain, zlib_body = prose_message(3), prose_message(8)
    legacy = insert_body(engine, plain)
    upgrade(engine, "0017")
    zlib_packed = ZLIB + zlib.compress(zlib_body, 1)
    from_0017 = insert_body(engine, zlib_packed)
    upgrade(engine)
    assert stored(engine, legacy) == plain and read_raw(db, legacy) == plain
    assert stored(engine, from_0017) == zlib_packed and read_raw(db, from_0017) == zlib_body
    bodies = [prose_message(i) for i in range(4, 8)]
    packed_ids = add_messages(db, bodies)
    assert all(stored(engine, i)[:1] == ZSTD for i in packed_ids)

    # 0017's code reads zlib rows only: every Zstandard row becomes one, the rest stay.
    downgrade(engine, "0017")
    assert stored(engine, legacy) == plain and stored(engine, from_0017) == zlib_packed
    at_0017 = [stored(engine, i) for i in packed_ids]
    assert all(row[:1] == ZLIB for row in at_0017)
    assert [zlib.decompress(row[1:]) for row in at_0017] == bodies

    downgrade(engine, "0016")
    assert stored(engine, legacy) == plain and stored(engine, from_0017) == zlib_body
    assert [stored(engine, i) for i in packed_ids] == bodies


LETTER_TEXT = "Dear {{ first }},\n\n" + prose_message(5).decode().split("\r\n\r\n", 1)[1].strip()


def letter_message(name: str) -> bytes:
    """One of LETTER_TEXT's messages as a letter renders it (CRLF, its own headers)."""
    body = LETTER_TEXT.replace("{{ first }}", name).replace("\n", "\r\n")
    return (f"Subject: Hello {name}\r\nMessage-ID: <{name}@example.com>\r\n\r\n{body}").encode()


def test_a_letter_packs_against_its_templates_and_reads_only_with_them() -> None:
    dictionary = letter_dictionary("Hello {{ first }}", LETTER_TEXT, None)
    assert b"\r\n" in dictionary and b"\n\n" not in dictionary  # as on the wire
    raw = letter_message("Zoe")
    packed = pack_letter(raw, dictionary)
    assert packed[:1] == LETTER and isinstance(packed, Packed)
    # What the letter's messages share is in the dictionary: 5 KB packs to a few hundred
    # bytes, where plain Zstandard keeps about half.
    assert len(packed) < len(raw) // 8 and len(packed) < len(pack(raw)) // 4
    assert unpack_letter(packed, dictionary) == raw
    assert unpack_letter(pack(raw), dictionary) == raw  # other rows need none
    with pytest.raises(ValueError, match="dictionary"):
        unpack(packed)
    other = letter_dictionary("Hello {{ first }}", LETTER_TEXT.replace("e", "a"), None)
    with pytest.raises(zstandard.ZstdError):  # checked: never other bytes
        unpack_letter(packed, other)


def test_a_letter_dictionary_and_the_codecs_kept_are_bounded() -> None:
    huge = letter_dictionary("Hi", "x" * (DICTIONARY_MAX + 10), "y" * 100)
    assert len(huge) == DICTIONARY_MAX
    for n in range(_CODECS_KEPT + 5):
        dictionary = letter_dictionary(f"Letter {n}", LETTER_TEXT, None)
        assert unpack_letter(pack_letter(b"Subject: x\r\n\r\nhi\r\n", dictionary), dictionary)
    assert len(_CONTEXTS.letter_packers) == len(_CONTEXTS.letter_unpackers) == _CODECS_KEPT


def _letter_with_messages(db: Database, bodies: list[bytes], single: bytes) -> list[int]:
    """A form letter with LETTER_TEXT whose messages hold ``bodies`` packed against it,
    and a single email holding ``single``: their message ids (the single one last)."""
    with db.write() as s:
        user, alias = add_owner(s)
        letter = Campaign(user_id=user.id, alias_id=alias.id, subject="Hello {{ first }}",
                          text_template=LETTER_TEXT, total=len(bodies))  # fmt: skip
        s.add(letter)
        s.flush()
        rows = [Message(user_id=user.id, alias_id=alias.id, campaign_id=letter.id,
                        lane=f"alias:{alias.id}", kind="campaign", status="sent",
                        envelope_from="work@example.com", recipients=[f"r{i}@example.org"],
                        body=MessageBody(raw=pack_letter(raw, letter.body_dictionary)))
                for i, raw in enumerate(bodies)]  # fmt: skip
        alone = Message(lane="system", kind="single", envelope_from="a@example.com",
                        recipients=["b@example.org"], body=MessageBody(raw=single))  # fmt: skip
        rows.append(alone)
        s.add_all(rows)
        s.flush()
        return [m.id for m in rows]


def test_letter_bodies_read_in_a_session_and_going_back_unpacks_them(engine: Engine) -> None:
    upgrade(engine)
    db = Database(engine)
    bodies = [letter_message(name) for name in ("Ann", "Bob", "Zoë")]
    single = prose_message(9)
    ids = _letter_with_messages(db, bodies, single)
    assert [stored(engine, i)[:1] for i in ids] == [LETTER, LETTER, LETTER, ZSTD]
    assert [read_raw(db, i) for i in ids] == [*bodies, single]
    with db.read() as s:  # the column alone cannot read it, and says so
        assert isinstance(s.get_one(MessageBody, ids[0]).raw, LetterPacked)

    # 0020's code reads no LETTER rows: each becomes a plain Zstandard row, the rest stay.
    before = stored(engine, ids[-1])
    downgrade(engine, "0020")
    assert [stored(engine, i)[:1] for i in ids] == [ZSTD] * 4
    assert [unpack(stored(engine, i)) for i in ids] == [*bodies, single]
    assert stored(engine, ids[-1]) == before
