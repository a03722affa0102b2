"""A form letter's recipients: rows from a JSON list, a CSV file, an upload or pasted text.

A :data:`RowSource` can be read more than once and never holds the list: creating a
campaign reads it twice (validate, then insert), so a 1,000,000-row CSV costs two reads of
the file, not its size in memory. Every row is either a :class:`Row` or a :class:`BadRow`
with the reason a person sees.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError

from sendas.errors import ValidationFailed
from sendas.schemas import RecipientIn, check_email
from sendas.services.campaigns.csvfile import (
    NO_LIMITS,
    Columns,
    CsvLayout,
    CsvLimits,
    OpenBinary,
    Record,
    columns,
    file_too_large,
    inspect,
    is_header,
    records,
)


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


class CsvRows:
    """The rows of a CSV file (see :mod:`.csvfile`): a :data:`RowSource` that also tells
    its merge field names. The file is inspected on first use, then read on every call.

    ``open_binary`` opens the file from its start each time (the upload, or a path).
    Problems with the file as a whole raise :class:`ValidationFailed` for ``file`` (or
    ``email_column``), :class:`~sendas.errors.TooLarge` past ``limits``; a bad row is
    yielded as a :class:`BadRow` with its line number.
    """

    def __init__(
        self,
        open_binary: OpenBinary,
        *,
        email_column: str | None = None,
        limits: CsvLimits = NO_LIMITS,
    ) -> None:
        self._open = open_binary
        self._email_column = email_column
        self._limits = limits
        self._layout: CsvLayout | None = None
        self._columns: Columns | None = None

    def file_layout(self) -> CsvLayout:
        """Encoding, delimiter and header (the file is inspected once)."""
        if self._layout is None:
            self._layout = inspect(self._open, self._limits)
        return self._layout

    def layout(self) -> tuple[CsvLayout, Columns]:
        """How the file is read and its columns; raises as the class says."""
        if self._columns is None:
            self._columns = columns(self.file_layout(), self._email_column)
        return self.file_layout(), self._columns

    def __call__(self) -> Iterator[Row | BadRow]:
        layout, cols = self.layout()
        for record in records(self._open, layout, self._limits):
            yield _record(record, cols)


def csv_rows(
    open_binary: OpenBinary,
    *,
    email_column: str | None = None,
    limits: CsvLimits = NO_LIMITS,
) -> CsvRows:
    """The rows of a CSV file whose first line names the columns (see :class:`CsvRows`)."""
    return CsvRows(open_binary, email_column=email_column, limits=limits)


def _record(record: Record, columns: Columns) -> Row | BadRow:
    values, line = record.values, record.line
    if len(values) != columns.width:
        return BadRow(line, None, f"expected {columns.width} columns, found {len(values)}")
    email = values[columns.email_at].strip()
    problem = address_problem(email)
    if problem:
        return BadRow(line, email, problem)
    return Row(line, email, {name: values[i] for i, name in columns.fields})


# --- uploads -----------------------------------------------------------------------------------


def recipients_from_upload(
    upload: UploadedFile | str | None,
    *,
    pasted: str | None = None,
    email_column: str | None = None,
    limits: CsvLimits = NO_LIMITS,
) -> CsvRows:
    """The recipients of a form: the uploaded CSV ``file``, else the ``pasted`` text.

    The upload is read from its start on each pass and left open (its owner closes it).
    ``pasted`` None means the form offers no paste box: the upload is then required. Pasted
    text whose first line is not a header (see :func:`is_header`) is a bare list of
    addresses and gets an ``email`` header. Raises :class:`~sendas.errors.TooLarge` past
    ``limits.max_bytes``, :class:`ValidationFailed` for ``file`` (none given) or
    ``recipients_text`` (neither given); reading the rows raises as :class:`CsvRows` says.
    """
    if not isinstance(upload, str) and upload is not None and upload.filename:
        file = upload.file
        if limits.max_bytes is not None and _size(file) > limits.max_bytes:
            raise file_too_large(limits.max_bytes)
        if pasted is None or not _blank(file):
            return csv_rows(lambda: _rewound(file), email_column=email_column, limits=limits)
    if pasted is None:
        raise ValidationFailed.one("file", "upload the recipients as a CSV file")
    text = pasted.strip()
    if not text:
        raise ValidationFailed.one("recipients_text", "paste recipients or upload a CSV file")
    if not is_header(text.splitlines()[0], email_column):
        text = "email\n" + text
    data = text.encode()
    return csv_rows(
        lambda: contextlib.nullcontext(io.BytesIO(data)), email_column=email_column, limits=limits
    )


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
