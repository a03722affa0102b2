"""A form letter's recipients: rows from a JSON list, a CSV file, an upload or pasted text.

A :data:`RowSource` can be read more than once and never holds the list: creating a
campaign reads it twice (validate, then insert), so a 1,000,000-row CSV costs two reads of
the file, not its size in memory. Every row is either a :class:`Row` or a :class:`BadRow`
with the reason a person sees.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any, Protocol

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError

from sendas.errors import FieldProblem, ValidationFailed
from sendas.schemas import RecipientIn, check_email


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    email: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    email: str | None
    reason: str


# A source can be read more than once; each call starts from the first recipient.
RowSource = Callable[[], Iterator[Row | BadRow]]


class UploadedFile(Protocol):
    """A form field sent as a file (Starlette's ``UploadFile`` is one)."""

    @property
    def filename(self) -> str | None: ...

    @property
    def file(self) -> IO[bytes]: ...


# --- addresses ---------------------------------------------------------------------------------

# A fast path for the common case only: a plain ASCII address that schemas.check_email is
# known to accept (checking costs ~75 µs an address, 150 s for two passes over a million).
# Anything it does not match (punycode, "ab--" labels, special-use names, Unicode) goes to
# check_email, which decides; tests/services/campaigns/test_recipients.py holds them equal.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN = re.compile(rf"(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@(?:{_LABEL}\.)+(?P<tld>[A-Za-z]{{2,63}})")
_RESERVED = frozenset(d for d in SPECIAL_USE_DOMAIN_NAMES if d != "test")


def _plainly_valid(email: str) -> bool:
    match = _PLAIN.fullmatch(email) if email.isascii() else None
    return (
        match is not None
        and len(match["local"]) <= 64
        and "--" not in email.partition("@")[2]
        and match["tld"].lower() not in _RESERVED
    )


def address_problem(email: str) -> str | None:
    """Why ``email`` cannot be a recipient, or None (the check of ``schemas.check_email``)."""
    if len(email) > 254:
        return "the address is too long"
    if _plainly_valid(email):
        return None
    try:
        check_email(email)
    except EmailNotValidError as exc:
        return f"{email!r} is not a valid email address: {exc}"
    return None


# --- sources -----------------------------------------------------------------------------------


def json_rows(recipients: Sequence[RecipientIn]) -> RowSource:
    """Rows of a JSON list; ``line`` is the position in the list, from 1."""

    def rows() -> Iterator[Row | BadRow]:
        for index, r in enumerate(recipients, start=1):
            email = r.email.strip()
            problem = address_problem(email)
            yield BadRow(index, email, problem) if problem else Row(index, email, r.fields)

    return rows


def csv_rows(open_binary: Callable[[], AbstractContextManager[IO[bytes]]]) -> RowSource:
    """Rows of a UTF-8 CSV whose first line names the columns; one must be ``email``.

    ``open_binary`` opens the file from its start each time (the upload, or a path).
    A header problem, a broken quote or undecodable bytes raise :class:`ValidationFailed`
    for ``file``; a bad row is yielded as a :class:`BadRow` with its line number.
    """

    def rows() -> Iterator[Row | BadRow]:
        with open_binary() as binary:
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
            try:
                yield from _parse_csv(text)
            except UnicodeDecodeError:
                raise ValidationFailed.one("file", "the file is not UTF-8 text") from None
            finally:
                text.detach()  # the opener closes (or keeps) the underlying file

    return rows


@dataclass(frozen=True, slots=True)
class _Columns:
    width: int
    email_at: int
    others: list[tuple[int, str]]


def _parse_csv(text: IO[str]) -> Iterator[Row | BadRow]:
    reader = csv.reader(text, strict=True)
    columns = _header(reader)
    previous = reader.line_num
    try:
        for row in reader:
            line, previous = previous + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip() and columns.width > 1):
                continue  # a blank line
            yield _record(line, row, columns)
    except csv.Error as exc:
        raise ValidationFailed.one("file", f"line {reader.line_num}: {exc}") from None


def _header(reader: Iterator[list[str]]) -> _Columns:
    """The column names of line 1; every problem with them at once."""
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationFailed.one(
            "file", "the file is empty: line 1 must name the columns"
        ) from None
    except csv.Error as exc:
        raise ValidationFailed.one("file", f"line 1: {exc}") from None
    names = [h.strip() for h in header]
    problems = []
    if any(not n for n in names):
        problems.append("line 1: every column needs a name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"line 1: column names appear twice: {', '.join(dupes)}")
    email_cols = [i for i, n in enumerate(names) if n.casefold() == "email"]
    if len(email_cols) != 1:
        problems.append("line 1: the header must have exactly one column named 'email'")
    if problems:
        raise ValidationFailed([FieldProblem(("body", "file"), p) for p in problems])
    email_at = email_cols[0]
    others = [(i, n) for i, n in enumerate(names) if i != email_at]
    return _Columns(len(names), email_at, others)


def _record(line: int, row: list[str], columns: _Columns) -> Row | BadRow:
    if len(row) != columns.width:
        return BadRow(line, None, f"expected {columns.width} columns, found {len(row)}")
    email = row[columns.email_at].strip()
    problem = address_problem(email)
    if problem:
        return BadRow(line, email, problem)
    return Row(line, email, {n: row[i] for i, n in columns.others})


# --- uploads -----------------------------------------------------------------------------------


def recipients_from_upload(
    upload: UploadedFile | str | None,
    *,
    pasted: str | None = None,
    max_bytes: int | None = None,
) -> RowSource:
    """The recipients of a form: the uploaded CSV ``file``, else the ``pasted`` text.

    The upload is read from its start on each pass and left open (its owner closes it).
    ``pasted`` None means the form offers no paste box: the upload is then required. Pasted
    text that does not name an ``email`` column on its first line is a bare list of
    addresses and gets that header. Raises :class:`ValidationFailed` for ``file`` (too
    large, none given) or ``recipients_text`` (neither given).
    """
    if not isinstance(upload, str) and upload is not None and upload.filename:
        file = upload.file
        if max_bytes is not None and _size(file) > max_bytes:
            raise ValidationFailed.one("file", f"the file is larger than {_megabytes(max_bytes)}")
        if pasted is None or not _blank(file):
            return csv_rows(lambda: _rewound(file))
    if pasted is None:
        raise ValidationFailed.one("file", "upload the recipients as a CSV file")
    text = pasted.strip()
    if not text:
        raise ValidationFailed.one("recipients_text", "paste recipients or upload a CSV file")
    first = text.splitlines()[0]
    if "email" not in [c.strip().casefold() for c in first.split(",")]:
        text = "email\n" + text
    data = text.encode()
    return csv_rows(lambda: contextlib.nullcontext(io.BytesIO(data)))


def nth_recipient(rows: RowSource, wanted: int) -> tuple[int, Row, int]:
    """The ``wanted``-th valid recipient (kept within 1..count), its number, and the count.

    Raises :class:`ValidationFailed` for ``file`` when no recipient is valid.
    """
    count = 0
    chosen: Row | None = None
    for row in rows():
        if isinstance(row, Row):
            count += 1
            if count <= max(wanted, 1):
                chosen = row
    if chosen is None:
        raise ValidationFailed.one("file", "no valid recipient in the list")
    return min(max(wanted, 1), count), chosen, count


@contextlib.contextmanager
def _rewound(file: IO[bytes]) -> Iterator[IO[bytes]]:
    file.seek(0)
    yield file  # the upload stays open: a campaign reads it twice


def _size(file: IO[bytes]) -> int:
    file.seek(0, io.SEEK_END)
    return file.tell()


def _blank(file: IO[bytes]) -> bool:
    """Whether the file holds nothing but white space (an empty file field)."""
    file.seek(0)
    while chunk := file.read(64 * 1024):
        if chunk.strip():
            return False
    return True


def _megabytes(limit: int) -> str:
    return f"{limit / 2**20:g} MB"
