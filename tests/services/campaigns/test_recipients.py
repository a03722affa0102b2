"""The recipients parser: addresses, JSON and CSV rows, uploads and pasted lists."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO

import pytest
from email_validator import EmailNotValidError

from sendas.errors import TooLarge, ValidationFailed
from sendas.schemas import RecipientIn, check_email
from sendas.services.campaigns.csvfile import CsvLimits
from sendas.services.campaigns.recipients import (
    BadRow,
    Row,
    RowSource,
    address_problem,
    json_rows,
    nth_recipient,
    recipients_from_upload,
)


@dataclass
class Upload:
    filename: str | None
    file: IO[bytes]


def upload(data: bytes, filename: str | None = "list.csv") -> Upload:
    return Upload(filename, io.BytesIO(data))


def from_csv(data: bytes) -> RowSource:
    return recipients_from_upload(upload(data))


def problems(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[tuple[object, str]]:
    return [(p.loc, p.msg) for p in exc.value.problems]


# --- addresses ---------------------------------------------------------------------------------

ADDRESSES = [
    "ann@example.org",
    "Ann.Lee+news@Mail.Example.COM",
    "o'brien@example.ie",
    "x@foo.test",  # admitted: private and test servers use .test
    "x@printer.local",  # special-use names are refused
    "x@host.localhost",
    "x@site.onion",
    "x@a.invalid",
    "x@ab--cd.example.com",  # "ab--" is not a hostname label outside punycode
    "x@xn--bcher-kva.example",  # valid punycode
    "x@xn--zz.example",  # invalid punycode
    "x@example.123",
    "x@localhost",
    "x..y@example.org",
    ".x@example.org",
    "x@-example.org",
    "x@example-.org",
    "a" * 64 + "@example.org",
    "a" * 65 + "@example.org",
    "x@" + "a" * 64 + ".org",
    "jörg@example.de",
    "x@bücher.example",
    "not-an-address",
    "two@@example.org",
    "x@example.org\n",
    "",
]


@pytest.mark.parametrize("email", ADDRESSES)
def test_address_problem_agrees_with_the_shared_check(email: str) -> None:
    try:
        check_email(email)
        accepted = True
    except EmailNotValidError:
        accepted = False
    assert (address_problem(email) is None) == accepted


def test_a_refused_address_says_why_in_plain_words() -> None:
    problem = address_problem("nobody")
    assert problem is not None
    assert problem.startswith("'nobody' is not a valid email address: ")
    assert address_problem("a" * 250 + "@example.org") == "the address is too long"


# --- JSON rows ---------------------------------------------------------------------------------


def test_json_rows_number_recipients_from_one_and_strip_addresses() -> None:
    rows = json_rows(
        [
            RecipientIn(email=" ann@example.org ", fields={"first": "Ann"}),
            RecipientIn(email="nobody"),
        ]
    )
    ann, nobody = list(rows())
    assert ann == Row(1, "ann@example.org", {"first": "Ann"})
    assert isinstance(nobody, BadRow) and (nobody.line, nobody.email) == (2, "nobody")
    assert list(rows()) == [ann, nobody]  # a source reads again from the start


# --- CSV rows ----------------------------------------------------------------------------------


def test_csv_rows_report_bad_lines_by_their_number() -> None:
    data = (
        "\ufeffEmail,first,note\n"  # line 1, with a byte order mark
        "ann@example.org,Ann,\n"  # 2
        "nobody,No,\n"  # 3
        "\n"  # 4: blank
        '"ben@example.org",Ben,"two\nlines"\n'  # 5-6: one record
        "cat@example.org,Cat\n"  # 7: too few columns
    ).encode()
    got = list(from_csv(data)())
    assert got[0] == Row(2, "ann@example.org", {"first": "Ann", "note": ""})
    assert isinstance(got[1], BadRow) and got[1].line == 3 and got[1].email == "nobody"
    assert got[2] == Row(5, "ben@example.org", {"first": "Ben", "note": "two\nlines"})
    assert got[3] == BadRow(7, None, "expected 3 columns, found 2")
    assert len(got) == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty: line 1 must name the columns"),
        (b"address,first\n", "line 1: no column is named like an email address"),
        (b"email,E-Mail\n", "line 1: the columns 'email', 'E-Mail' could all hold the addresses"),
        (b"email\n\x81\x8d@example.org\n", "the file is neither UTF-8 nor Windows-1252 text"),
        (b'email,first\nann@example.org,"open\n', "line 2: "),
    ],
)
def test_csv_file_problems_refuse_the_file(data: bytes, message: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        list(from_csv(data)())
    [(loc, msg), *_] = problems(exc)
    assert loc == ("body", "file")
    assert msg.startswith(message)


# --- uploads and pasted lists --------------------------------------------------------------------


def test_pasted_bare_addresses_get_an_email_header() -> None:
    rows = recipients_from_upload(None, pasted="ann@example.org\nben@example.org\n")
    assert [r.email for r in rows()] == ["ann@example.org", "ben@example.org"]
    rows = recipients_from_upload(None, pasted="name,EMAIL\nAnn,ann@example.org")
    assert list(rows()) == [Row(2, "ann@example.org", {"name": "Ann"})]
    rows = recipients_from_upload(None, pasted="nobody\nann@example.org")
    assert [(r.line, r.email) for r in rows()] == [(2, "nobody"), (3, "ann@example.org")]


def test_a_pasted_header_without_an_address_name_asks_for_the_column() -> None:
    pasted = "Name;Work\nAnn;ann@example.org"
    with pytest.raises(ValidationFailed) as exc:
        recipients_from_upload(None, pasted=pasted).layout()
    assert "no column is named like an email address" in problems(exc)[0][1]
    rows = recipients_from_upload(None, pasted=pasted, email_column="work")
    assert list(rows()) == [Row(2, "ann@example.org", {"name": "Ann"})]


def test_an_upload_wins_over_pasted_text_unless_it_is_blank() -> None:
    csv_file = upload(b"email\nfile@example.org\n")
    rows = recipients_from_upload(csv_file, pasted="pasted@example.org")
    assert [r.email for r in rows()] == ["file@example.org"]
    assert [r.email for r in rows()] == ["file@example.org"]  # rewound for the second pass
    rows = recipients_from_upload(upload(b" \n"), pasted="pasted@example.org")
    assert [r.email for r in rows()] == ["pasted@example.org"]
    rows = recipients_from_upload(upload(b"email\nx@example.org", filename=""), pasted="p@e.org")
    assert [r.email for r in rows()] == ["p@e.org"]  # a file field left empty


def test_upload_problems_name_the_field() -> None:
    with pytest.raises(TooLarge) as too_large:
        recipients_from_upload(upload(b"x" * (25 * 2**20 + 1)), limits=CsvLimits(25 * 2**20))
    assert [(p.loc, p.msg) for p in too_large.value.problems] == [
        (("body", "file"), "the file is larger than 25 MB (the limit is SENDAS_CSV_MAX_BYTES)")
    ]
    with pytest.raises(ValidationFailed) as exc:
        recipients_from_upload("list.csv")  # a text field where the file belongs
    assert problems(exc) == [(("body", "file"), "upload the recipients as a CSV file")]
    with pytest.raises(ValidationFailed) as exc:
        recipients_from_upload(None, pasted="  \n")
    assert problems(exc) == [(("body", "recipients_text"), "paste recipients or upload a CSV file")]


def test_an_empty_upload_without_a_paste_box_is_read_as_a_file() -> None:
    rows = recipients_from_upload(upload(b""))
    with pytest.raises(ValidationFailed) as exc:
        list(rows())
    assert problems(exc)[0][1].startswith("the file is empty")


# --- picking one recipient -----------------------------------------------------------------------


def test_nth_recipient_counts_valid_rows_and_stays_in_range() -> None:
    rows = recipients_from_upload(
        None, pasted="a@example.org\nnobody\nb@example.org\nc@example.org"
    )
    assert nth_recipient(rows, 2) == (2, Row(4, "b@example.org", {}), 3)
    assert nth_recipient(rows, 99)[:2] == (3, Row(5, "c@example.org", {}))
    assert nth_recipient(rows, 0)[:2] == (1, Row(2, "a@example.org", {}))
    with pytest.raises(ValidationFailed) as exc:
        nth_recipient(recipients_from_upload(None, pasted="nobody"), 1)
    assert problems(exc) == [(("body", "file"), "no valid recipient in the list")]
