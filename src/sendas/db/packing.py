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

Tags: ``ZSTD`` (a Zstandard frame, written now) and ``ZLIB`` (a zlib stream, written by
0017's code, still read). No message begins with a control character (a message begins
with a header field), so rows written before packing existed, which hold the plain
bytes, read as they are.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Any

import zstandard
from sqlalchemy import Connection, LargeBinary, bindparam, text
from sqlalchemy.types import TypeDecorator

ZLIB = b"\x00"
ZSTD = b"\x01"
TAGS = (ZLIB, ZSTD)
LEVEL = 1


class Packed(bytes):
    """A body already packed by :func:`pack`: written as it is."""


class _Contexts(threading.local):
    """One compressor and one decompressor per thread: a context is not thread-safe, and
    making one per call would cost what it saves."""

    def __init__(self) -> None:
        self.pack = zstandard.ZstdCompressor(level=LEVEL)
        self.unpack = zstandard.ZstdDecompressor()


_CONTEXTS = _Contexts()


def pack(data: bytes) -> Packed:
    return Packed(ZSTD + _CONTEXTS.pack.compress(data))


def is_packed(stored: bytes) -> bool:
    return stored[:1] in TAGS


def unpack(stored: bytes) -> bytes:
    """The body's bytes, from a packed row (either tag) or a plain one."""
    tag = stored[:1]
    if tag == ZSTD:
        return _CONTEXTS.unpack.decompress(memoryview(stored)[1:])
    if tag == ZLIB:
        return zlib.decompress(memoryview(stored)[1:])
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
        return None if value is None else unpack(value)


def as_zlib(stored: bytes) -> bytes | None:
    """A Zstandard row as 0017's code writes it (a zlib stream), or None: any other row
    reads there as it is."""
    if stored[:1] != ZSTD:
        return None
    return ZLIB + zlib.compress(unpack(stored), LEVEL)


def as_plain(stored: bytes) -> bytes | None:
    """A packed row's plain bytes (the format before 0017), or None for a plain row."""
    return unpack(stored) if is_packed(stored) else None


def rewrite_bodies(conn: Connection, convert: Callable[[bytes], bytes | None]) -> None:
    """Rewrite each stored body that ``convert`` changes (None: left as it is), 500 rows
    held at a time: what a migration going back to an older format does."""
    read = text(
        "SELECT message_id, raw FROM message_bodies WHERE message_id > :after "
        "AND raw IS NOT NULL ORDER BY message_id LIMIT 500"
    )
    write = text("UPDATE message_bodies SET raw = :raw WHERE message_id = :id").bindparams(
        bindparam("raw", type_=LargeBinary)
    )
    after = 0
    while rows := conn.execute(read, {"after": after}).all():
        after = rows[-1][0]
        changed = [{"id": i, "raw": new} for i, raw in rows
                   if (new := convert(bytes(raw))) is not None]  # fmt: skip
        if changed:
            conn.execute(write, changed)
