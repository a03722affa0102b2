"""Recipient CSV files as people save them: the one parser of the API, the pages and the CLI.

A file is inspected once (its size against the cap, its encoding, its delimiter and its
header), then read as many times as the caller needs. Excel and friends write ``;`` or tab
separators, Windows-1252 text and headers such as ``E-mail Address``; all of that is read
as is. Every other column becomes a merge field with a name a template can use
(``First Name`` -> ``first_name``).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO

from sendas.config import Settings
from sendas.errors import FieldProblem, TooLarge, ValidationFailed
from sendas.merge import BUILTIN_NAMES
from sendas.units import byte_size

OpenBinary = Callable[[], AbstractContextManager[IO[bytes]]]

# Header names (compared case-insensitively, runs of spaces and "_" as one space) that mark
# the column holding the addresses.
EMAIL_NAMES = ("email", "e-mail", "e-mail address", "email address", "mail")
DELIMITERS = ",;\t"
_SAMPLE = 32 * 1024  # characters the delimiter is guessed from
_CHUNK = 64 * 1024
_ENCODINGS = ("utf-8-sig", "cp1252")


@dataclass(frozen=True, slots=True)
class CsvLimits:
    """Caps on one file: bytes (checked while reading) and data rows. None: no cap."""

    max_bytes: int | None = None
    max_rows: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> CsvLimits:
        """The caps every recipient CSV is read under: SENDAS_CSV_MAX_BYTES, _MAX_ROWS."""
        return cls(settings.csv_max_bytes, settings.csv_max_rows)


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """What :func:`inspect` found: how to read the file and what its columns are."""

    encoding: str
    delimiter: str
    headers: list[str]
    email_candidates: list[int]


@dataclass(frozen=True, slots=True)
class Columns:
    """The address column and the merge field name of every other column."""

    width: int
    email_at: int
    fields: list[tuple[int, str]]

    @property
    def names(self) -> list[str]:
        return [name for _, name in self.fields]


NO_LIMITS = CsvLimits()


# --- reading bytes -------------------------------------------------------------------------------


def file_too_large(max_bytes: int) -> TooLarge:
    """The error for a file over ``max_bytes`` (SENDAS_CSV_MAX_BYTES)."""
    return TooLarge(
        [
            FieldProblem(
                ("body", "file"),
                f"the file is larger than {byte_size(max_bytes)} "
                "(the limit is SENDAS_CSV_MAX_BYTES)",
                "too_large",
            )
        ]
    )


def read_capped(binary: IO[bytes], limits: CsvLimits) -> Iterator[bytes]:
    """The file in chunks; past ``max_bytes`` a :class:`TooLarge` for ``file``."""
    total = 0
    while chunk := binary.read(_CHUNK):
        total += len(chunk)
        if limits.max_bytes is not None and total > limits.max_bytes:
            raise file_too_large(limits.max_bytes)
        yield chunk


def _lines(binary: IO[bytes], encoding: str, limits: CsvLimits) -> Iterator[str]:
    """Decoded lines, each with its ``\\n`` (csv counts lines, and a quoted field may span)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    tail = ""
    try:
        for chunk in read_capped(binary, limits):
            *whole, tail = (tail + decoder.decode(chunk)).split("\n")
            yield from (line + "\n" for line in whole)
        tail += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ValidationFailed.one(
            "file", "the file is neither UTF-8 nor Windows-1252 text"
        ) from None
    if tail:
        yield tail


def _encoding_and_sample(open_binary: OpenBinary, limits: CsvLimits) -> tuple[str, str]:
    """UTF-8 (with or without BOM) if every byte decodes so, else Windows-1252; the start."""
    decoder = codecs.getincrementaldecoder(_ENCODINGS[0])()
    encoding, sample = _ENCODINGS[0], ""
    with open_binary() as binary:
        for chunk in read_capped(binary, limits):  # to the end: the size cap is checked here
            if encoding != _ENCODINGS[0]:
                continue
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError:
                encoding = _ENCODINGS[1]
                continue
            if len(sample) < _SAMPLE:
                sample += text
        if encoding == _ENCODINGS[0]:
            try:
                sample += decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                encoding = _ENCODINGS[1]
    if encoding == _ENCODINGS[1]:
        with open_binary() as binary:
            sample = binary.read(_SAMPLE).decode(encoding, errors="replace")
    return encoding, sample[:_SAMPLE]


# --- the layout --------------------------------------------------------------------------------


def _delimiter(sample: str) -> str:
    """Comma, semicolon or tab: the sniffer's guess if the header has it, else the most used."""
    header = sample.split("\n", 1)[0]
    if "\n" in sample:
        sample = sample[: sample.rfind("\n")]  # the sniffer chokes on a cut last line
    try:
        guess = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        guess = ""
    if guess and guess in header:
        return guess
    best = max(DELIMITERS, key=header.count)  # ties go to the comma
    return best if header.count(best) else ","


def _email_key(header: str) -> str:
    return re.sub(r"[\s_]+", " ", header.strip()).casefold()


def inspect(open_binary: OpenBinary, limits: CsvLimits = NO_LIMITS) -> CsvLayout:
    """Encoding, delimiter and header of a file whose first line names the columns.

    Reads the whole file once (the byte cap is checked here). Raises :class:`TooLarge`
    past ``max_bytes`` and :class:`ValidationFailed` for ``file`` when the file is empty,
    not text, or its first line cannot be read.
    """
    encoding, sample = _encoding_and_sample(open_binary, limits)
    if not sample.strip():
        raise ValidationFailed.one("file", "the file is empty: line 1 must name the columns")
    delimiter = _delimiter(sample)
    try:
        header = next(csv.reader(io.StringIO(sample), delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration) as exc:
        raise ValidationFailed.one("file", f"line 1: {exc}") from None
    headers = [h.strip() for h in header]
    candidates = [i for i, h in enumerate(headers) if _email_key(h) in EMAIL_NAMES]
    return CsvLayout(encoding, delimiter, headers, candidates)


def is_header(first_line: str, email_column: str | None = None) -> bool:
    """Whether a pasted list's first line names its columns rather than being a recipient.

    It does if it names the address column, or if it has several cells and no ``@`` (a
    header whose address column the user still has to choose). A lone cell without a name
    is an address, valid or not.
    """
    cells = re.split(r"[,;\t]", first_line)
    wanted = (email_column or "").strip().casefold()
    if any(
        _email_key(c) in EMAIL_NAMES or (wanted and c.strip().casefold() == wanted) for c in cells
    ):
        return True
    return len(cells) > 1 and "@" not in first_line


def field_name(header: str, position: int) -> str:
    """A merge field name for a column: ``First Name`` -> ``first_name``, ``Prénom`` -> ``prenom``.

    Lowercase ASCII letters, digits and single ``_``; never starts with a digit (``2024`` ->
    ``column_2024``); an empty result is ``column_N`` (N counts columns from 1).
    """
    plain = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", plain.lower()).strip("_")
    if not name:
        return f"column_{position}"
    return f"column_{name}" if name[0].isdigit() else name


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def columns(layout: CsvLayout, email_column: str | None = None) -> Columns:
    """The address column (found by name, or ``email_column``: a header or a number from 1)
    and the other columns' merge field names, made unique (``name``, ``name_2``, ...).

    Raises :class:`ValidationFailed` for ``email_column`` when it names no column, and for
    ``file`` when no header or several headers look like the address column.
    """
    headers = layout.headers
    if email_column is not None and email_column.strip():
        email_at = _chosen(headers, email_column.strip())
    elif len(layout.email_candidates) == 1:
        email_at = layout.email_candidates[0]
    elif layout.email_candidates:
        names = ", ".join(repr(headers[i]) for i in layout.email_candidates)
        raise ValidationFailed.one(
            "file", f"line 1: the columns {names} could all hold the addresses: choose one"
        )
    else:
        raise ValidationFailed.one(
            "file",
            "line 1: no column is named like an email address (email, e-mail, "
            "E-mail Address, Email Address, mail): rename it or choose the address column",
        )
    taken = set(BUILTIN_NAMES)  # {{ email }} and {{ fields }} are the template's own
    fields = [
        (i, _unique(field_name(h, i + 1), taken)) for i, h in enumerate(headers) if i != email_at
    ]
    return Columns(len(headers), email_at, fields)


def _chosen(headers: list[str], wanted: str) -> int:
    for i, h in enumerate(headers):
        if h.casefold() == wanted.casefold():
            return i
    if wanted.isdigit() and 1 <= int(wanted) <= len(headers):
        return int(wanted) - 1
    raise ValidationFailed(
        [FieldProblem(("body", "email_column"), f"the file has no column named {wanted!r}")]
    )


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One data record: the line it starts on and its values."""

    line: int
    values: list[str]


def records(
    open_binary: OpenBinary, layout: CsvLayout, limits: CsvLimits = NO_LIMITS
) -> Iterator[Record]:
    """Every non-blank record after the header, with the line it starts on.

    Raises :class:`TooLarge` past ``max_rows`` records or ``max_bytes``, and
    :class:`ValidationFailed` for ``file`` on a broken quote or undecodable bytes.
    """
    with open_binary() as binary:
        reader = csv.reader(
            _lines(binary, layout.encoding, limits), delimiter=layout.delimiter, strict=True
        )
        try:
            next(reader, None)  # the header, read by inspect()
            previous, count = reader.line_num, 0
            for values in reader:
                line, previous = previous + 1, reader.line_num
                if not any(v.strip() for v in values):
                    continue  # a blank line, or only separators (spreadsheets write those)
                count += 1
                if limits.max_rows is not None and count > limits.max_rows:
                    raise TooLarge.one(
                        "file",
                        f"the file has more than {limits.max_rows:,} recipients "
                        "(the limit is SENDAS_CSV_MAX_ROWS)",
                        "too_large",
                    )
                yield Record(line, values)
        except csv.Error as exc:
            raise ValidationFailed.one("file", f"line {reader.line_num}: {exc}") from None
