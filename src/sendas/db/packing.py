"""Message bodies stored compressed.

Storing each rendered ~5 KB body costs the worker's database thread about a fifth of its
throughput (WAL writes and their fsync), and it is the bytes, not the row layout, that
cost. So bodies are stored packed: one tag byte, then the compressed bytes. A form
letter's body is packed in the render process (:class:`Packed`), off the worker's critical
path, and every other body as it is written (:class:`PackedBytes`).

Zstandard at level 1 shrinks prose about 2.2x, as zlib's level 1 does, for less CPU:
each ``zlib.compress`` call sets up and clears a quarter of a megabyte of state. Fed 5 KB
bodies 32 at a time, a render process spent 60-90 µs per body in zlib and 15-20 in a
Zstandard context kept per thread (unpacking: 7 µs against 13); in bench a's shape the
render processes' CPU per message fell by about an eighth.

A form letter's messages share all but a few words: each is packed with its letter's
templates as a Zstandard dictionary (:func:`letter_dictionary`), which shrinks a 5 KB
letter to a few hundred bytes instead of 2.5 KB. Such a row reads as :class:`LetterPacked`
(still packed) until :func:`unpack_letter` is given its letter's dictionary: the column
alone cannot know it (``Message.raw`` and the claim resolve it).

Tags: ``ZSTD`` (a Zstandard frame), ``LETTER`` (a Zstandard frame made with its letter's
dictionary, written since 0021) and ``ZLIB`` (a zlib stream, written by 0017's code,
still read). No message begins with a control character (a message begins
with a header field), so rows written before packing existed, which hold the plain
bytes, read as they are.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import zstandard
from sqlalchemy import Connection, LargeBinary, bindparam, text
from sqlalchemy.types import TypeDecorator

ZLIB = b"\x00"
ZSTD = b"\x01"
LETTER = b"\x02"
TAGS = (ZLIB, ZSTD, LETTER)
LEVEL = 1
# A letter's dictionary is its templates' first bytes: enough for any letter people write,
# and a bound on the memory each cached one takes (about 0.4 MB at this size), of which a
# thread keeps :data:`_CODECS_KEPT` for packing and as many for reading.
DICTIONARY_MAX = 128 * 1024
_CODECS_KEPT = 8


class Packed(bytes):
    """A body already packed by :func:`pack`: written as it is."""


class LetterPacked(Packed):
    """A form letter's body as stored (``LETTER`` tag): :func:`unpack_letter` with its
    letter's dictionary gives the bytes (and written back, it is written as it is)."""


class _Contexts(threading.local):
    """One compressor and one decompressor per thread (and per letter dictionary, the
    last few used): a context is not thread-safe, and making one per call would cost what
    it saves (a dictionary's tables take longer to build than a letter to pack). Packing
    and reading letters are cached apart: the API's threads only ever read."""

    def __init__(self) -> None:
        self.pack = zstandard.ZstdCompressor(level=LEVEL)
        self.unpack = zstandard.ZstdDecompressor()
        self.letter_packers: OrderedDict[bytes, zstandard.ZstdCompressor] = OrderedDict()
        self.letter_unpackers: OrderedDict[bytes, zstandard.ZstdDecompressor] = OrderedDict()

    def letter_packer(self, dictionary: bytes) -> zstandard.ZstdCompressor:
        return _kept(self.letter_packers, dictionary, _letter_packer)

    def letter_unpacker(self, dictionary: bytes) -> zstandard.ZstdDecompressor:
        return _kept(self.letter_unpackers, dictionary, _letter_unpacker)


def _raw_dictionary(dictionary: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _letter_packer(dictionary: bytes) -> zstandard.ZstdCompressor:
    data = _raw_dictionary(dictionary)
    data.precompute_compress(level=LEVEL)
    # With a checksum: a raw dictionary has no id, and read with another one a body must
    # fail, not read as other bytes.
    return zstandard.ZstdCompressor(dict_data=data, write_checksum=True)


def _letter_unpacker(dictionary: bytes) -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(dict_data=_raw_dictionary(dictionary))


_V = TypeVar("_V")


def _kept(kept: OrderedDict[bytes, _V], key: bytes, build: Callable[[bytes], _V]) -> _V:
    """``kept[key]``, built from ``key`` if missing; the least recently used one goes past
    :data:`_CODECS_KEPT`."""
    value = kept.get(key)
    if value is None:
        value = kept[key] = build(key)
        if len(kept) > _CODECS_KEPT:
            kept.popitem(last=False)
    else:
        kept.move_to_end(key)
    return value


_CONTEXTS = _Contexts()


def pack(data: bytes) -> Packed:
    return Packed(ZSTD + _CONTEXTS.pack.compress(data))


def letter_dictionary(subject: str, text: str | None, html: str | None) -> bytes:
    """A form letter's dictionary: its templates as they appear on the wire (CRLF line
    ends). Made from what a letter never changes, so each row stays readable; a different
    recipe would need a tag of its own, as rows made with this one cannot be read by it."""
    joined = "\n".join((subject, text or "", html or ""))
    return joined.replace("\r\n", "\n").replace("\n", "\r\n").encode()[:DICTIONARY_MAX]


def pack_letter(data: bytes, dictionary: bytes) -> Packed:
    """A form letter's body packed with its letter's dictionary (:func:`letter_dictionary`)."""
    return Packed(LETTER + _CONTEXTS.letter_packer(dictionary).compress(data))


def unpack_letter(stored: bytes, dictionary: bytes) -> bytes:
    """A body's bytes, given its letter's dictionary (needed by ``LETTER`` rows only)."""
    if stored[:1] == LETTER:
        return _CONTEXTS.letter_unpacker(dictionary).decompress(memoryview(stored)[1:])
    return unpack(stored)


def is_packed(stored: bytes) -> bool:
    return stored[:1] in TAGS


def unpack(stored: bytes) -> bytes:
    """The body's bytes, from a packed row (either tag) or a plain one. A form letter's
    row (``LETTER``) needs its dictionary: :func:`unpack_letter`."""
    tag = stored[:1]
    if tag == ZSTD:
        return _CONTEXTS.unpack.decompress(memoryview(stored)[1:])
    if tag == ZLIB:
        return zlib.decompress(memoryview(stored)[1:])
    if tag == LETTER:
        raise ValueError("a form letter's body needs its letter's dictionary to be read")
    return bytes(stored)


class PackedBytes(TypeDecorator[bytes]):
    """A body column: bytes in, bytes out, packed at rest."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Any) -> bytes | None:
        if value is None or isinstance(value, Packed):
            return value
        return pack(value)

    def process_result_value(self, value: bytes | None, dialect: Any) -> bytes | None:
        if value is None:
            return None
        if value[:1] == LETTER:  # its letter's dictionary is not in this row
            return LetterPacked(value)
        return unpack(value)


def as_zlib(stored: bytes) -> bytes | None:
    """A Zstandard row as 0017's code writes it (a zlib stream), or None: any other row
    reads there as it is."""
    if stored[:1] != ZSTD:
        return None
    return ZLIB + zlib.compress(unpack(stored), LEVEL)


def as_plain(stored: bytes) -> bytes | None:
    """A packed row's plain bytes (the format before 0017), or None for a plain row."""
    return unpack(stored) if is_packed(stored) else None


_WRITE_BODY = text("UPDATE message_bodies SET raw = :raw WHERE message_id = :id").bindparams(
    bindparam("raw", type_=LargeBinary)
)


def _rewrite(conn: Connection, read: str, convert: Callable[..., bytes | None]) -> None:
    """Rewrite each body that ``convert`` changes (None: left as it is), 500 rows held at a
    time. ``read`` selects ``message_id``, ``raw`` and what else ``convert`` takes, after
    ``:after``, in ``message_id`` order."""
    after = 0
    while rows := conn.execute(text(read), {"after": after}).all():
        after = rows[-1][0]
        changed = [{"id": i, "raw": new} for i, raw, *more in rows
                   if (new := convert(bytes(raw), *more)) is not None]  # fmt: skip
        if changed:
            conn.execute(_WRITE_BODY, changed)


def rewrite_bodies(conn: Connection, convert: Callable[[bytes], bytes | None]) -> None:
    """Rewrite each stored body that ``convert`` changes (None: left as it is): what a
    migration going back to an older format does."""
    read = (
        "SELECT message_id, raw FROM message_bodies WHERE message_id > :after "
        "AND raw IS NOT NULL ORDER BY message_id LIMIT 500"
    )
    _rewrite(conn, read, convert)


def _as_plain_zstd(
    stored: bytes, subject: str, text_template: str | None, html_template: str | None
) -> bytes | None:
    """A ``LETTER`` row as a plain Zstandard one (None: any other row stays)."""
    if stored[:1] != LETTER:
        return None
    dictionary = letter_dictionary(subject, text_template, html_template)
    return pack(unpack_letter(stored, dictionary))


def unpack_letters(conn: Connection) -> None:
    """Rewrite each form letter's body packed with its letter's dictionary as a plain
    Zstandard one: going back past 0021, whose code reads no ``LETTER`` rows."""
    read = (
        "SELECT b.message_id, b.raw, c.subject, c.text_template, c.html_template "
        "FROM message_bodies b JOIN messages m ON m.id = b.message_id "
        "JOIN campaigns c ON c.id = m.campaign_id "
        "WHERE b.message_id > :after AND b.raw IS NOT NULL ORDER BY b.message_id LIMIT 500"
    )
    _rewrite(conn, read, _as_plain_zstd)
