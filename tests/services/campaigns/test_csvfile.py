"""The one CSV parser of form letters: files as Excel, Numbers and CRMs save them."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import IO

import pytest

from sendas.errors import TooLarge, ValidationFailed
from sendas.services.campaigns.csvfile import CsvLimits, field_name, inspect
from sendas.services.campaigns.recipients import BadRow, CsvRows, Row, csv_rows
from sendas.services.campaigns.summary import summarize

EXCEL = (
    "E-mail Address;First Name;Company\r\n"
    "zoe@example.org;Zoë;Acme\r\n"
    "jose@example.org;José;Café Olé\r\n"
    "nobody;No;Body\r\n"
    ";;\r\n"  # an empty row, as spreadsheets write one
    "ann@example.org;Ann\r\n"
)


class Reads:
    """Opens ``data`` afresh each time and counts the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.handed_out = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[IO[bytes]]:
        outer = self

        class Counting(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                chunk = super().read(size)
                outer.handed_out += len(chunk)
                return chunk

        yield Counting(self.data)


def rows_of(data: bytes, **kw: object) -> CsvRows:
    return csv_rows(lambda: contextlib.nullcontext(io.BytesIO(data)), **kw)  # type: ignore[arg-type]


def messages(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[tuple[object, str]]:
    return [(p.loc, p.msg) for p in exc.value.problems]


def test_excel_semicolons_in_windows_1252_with_merge_field_names() -> None:
    rows = rows_of(EXCEL.encode("cp1252"))
    layout, columns = rows.layout()
    assert (layout.encoding, layout.delimiter) == ("cp1252", ";")
    assert columns.names == ["first_name", "company"]
    got = list(rows())
    assert got[0] == Row(2, "zoe@example.org", {"first_name": "Zoë", "company": "Acme"})
    assert got[1] == Row(3, "jose@example.org", {"first_name": "José", "company": "Café Olé"})
    assert isinstance(got[2], BadRow) and (got[2].line, got[2].email) == (4, "nobody")
    assert got[3] == BadRow(6, None, "expected 3 columns, found 2")  # line 5 was blank
    assert len(got) == 4


def test_the_same_file_in_utf8_with_a_bom_reads_the_same() -> None:
    utf8 = rows_of(b"\xef\xbb\xbf" + EXCEL.encode("utf-8"))
    assert utf8.layout()[0].encoding == "utf-8-sig"
    assert list(utf8()) == list(rows_of(EXCEL.encode("cp1252"))())


def test_tabs_and_commas_are_found_and_quotes_respected() -> None:
    tabbed = rows_of(b"Name\tEmail Address\nAnn, the first\tann@example.org\n")
    assert tabbed.layout()[0].delimiter == "\t"
    assert list(tabbed()) == [Row(2, "ann@example.org", {"name": "Ann, the first"})]
    commas = rows_of(b'email,note\nann@example.org,"a; b; c"\n')
    assert commas.layout()[0].delimiter == ","
    assert list(commas()) == [Row(2, "ann@example.org", {"note": "a; b; c"})]
    single = rows_of(b"mail\nann@example.org\n")
    assert [r.email for r in single() if isinstance(r, Row)] == ["ann@example.org"]


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("First Name", "first_name"),
        ("  Company / Org.  ", "company_org"),
        ("Prénom", "prenom"),
        ("2024 Sales", "column_2024_sales"),
        ("名前", "column_3"),
        ("", "column_3"),
        ("__a--b__", "a_b"),
    ],
)
def test_field_names_a_template_can_use(header: str, name: str) -> None:
    assert field_name(header, 3) == name


def test_duplicate_and_reserved_names_are_made_unique() -> None:
    header = b"Work Mail,First Name,first-name,Email,fields,\n"
    _, columns = rows_of(header, email_column="Work Mail").layout()
    assert columns.names == ["first_name", "first_name_2", "email_2", "fields_2", "column_6"]
    _, found = rows_of(header).layout()  # "Email" is the one address-like name
    assert (found.email_at, found.names[0]) == (3, "work_mail")


def test_the_address_column_can_be_chosen_by_header_or_number() -> None:
    data = b"Name,Work,Home\nAnn,ann@work.example.org,ann@home.example.org\n"
    by_name = list(rows_of(data, email_column=" home ")())
    assert by_name == [
        Row(2, "ann@home.example.org", {"name": "Ann", "work": "ann@work.example.org"})
    ]
    by_number = list(rows_of(data, email_column="2")())
    assert [r.email for r in by_number if isinstance(r, Row)] == ["ann@work.example.org"]
    with pytest.raises(ValidationFailed) as exc:
        list(rows_of(data, email_column="Office")())
    assert messages(exc) == [(("body", "email_column"), "the file has no column named 'Office'")]


def test_no_or_several_address_columns_ask_for_a_choice() -> None:
    with pytest.raises(ValidationFailed) as exc:
        list(rows_of(b"Name,Work\nAnn,ann@example.org\n")())
    assert messages(exc)[0][1].startswith("line 1: no column is named like an email address")
    with pytest.raises(ValidationFailed) as exc:
        list(rows_of(b"E-mail;Email Address\na@example.org;b@example.org\n")())
    assert "'E-mail', 'Email Address' could all hold the addresses" in messages(exc)[0][1]
    chosen = rows_of(b"E-mail;Email Address\na@example.org;b@example.org\n", email_column="E-mail")
    assert list(chosen()) == [Row(2, "a@example.org", {"email_address": "b@example.org"})]


def test_the_byte_cap_is_checked_while_reading() -> None:
    data = b"email\n" + b"someone@example.org\n" * 10_000  # 200 kB
    reads = Reads(data)
    rows = csv_rows(reads, limits=CsvLimits(max_bytes=100_000))
    with pytest.raises(TooLarge) as exc:
        list(rows())
    assert messages(exc) == [
        (
            ("body", "file"),
            "the file is larger than 97.7 KB (the limit is SENDAS_CSV_MAX_BYTES)",
        )
    ]
    assert reads.handed_out <= 100_000 + 64 * 1024  # stopped within one chunk of the cap


def test_the_row_cap_counts_records_not_blank_lines() -> None:
    data = b"email\n" + b"a@example.org\n\n" * 3
    assert len(list(rows_of(data, limits=CsvLimits(max_rows=3))())) == 3
    with pytest.raises(TooLarge) as exc:
        list(rows_of(data, limits=CsvLimits(max_rows=2))())
    assert messages(exc) == [
        (("body", "file"), "the file has more than 2 recipients (the limit is SENDAS_CSV_MAX_ROWS)")
    ]


def test_inspect_reads_the_header_only_as_text() -> None:
    layout = inspect(lambda: contextlib.nullcontext(io.BytesIO(EXCEL.encode("cp1252"))))
    assert layout.headers == ["E-mail Address", "First Name", "Company"]
    assert layout.email_candidates == [0]


def test_summary_counts_rows_and_lists_bad_lines() -> None:
    info = summarize(rows_of(EXCEL.encode("cp1252")))
    assert (info.valid, info.invalid) == (2, 2)
    assert info.fields == ["first_name", "company"]
    assert info.email_column == "E-mail Address"
    assert [b.line for b in info.bad] == [4, 6]
    unclear = summarize(rows_of(b"Name,Work\nAnn,ann@example.org\n"))
    assert unclear.headers == ["Name", "Work"] and unclear.needs_choice
    assert unclear.problem is not None and unclear.email_column is None
