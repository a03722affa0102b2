"""A form letter read from a posted form (API multipart body, web page)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO

import pytest
from pydantic import ValidationError

from sendas.errors import ValidationFailed
from sendas.services.campaigns.form import letter_from_form


@dataclass
class Upload:
    filename: str | None
    file: IO[bytes]


def test_the_form_gives_templates_recipients_and_skip_invalid() -> None:
    letter = letter_from_form(
        {
            "alias_id": "7",
            "subject": " Hi {{ first }} ",
            "text": Upload("body.txt", io.BytesIO("\ufeffDear {{ first }}".encode())),
            "html": "  ",
            "skip_invalid": "on",
            "file": Upload("list.csv", io.BytesIO(b"email,first\nann@example.org,Ann\n")),
        }
    )
    t = letter.templates
    assert (t.alias_id, t.subject, t.text, t.html) == (
        7,
        "Hi {{ first }}",
        "Dear {{ first }}",
        None,
    )
    assert letter.skip_invalid is True
    assert [r.email for r in letter.rows()] == ["ann@example.org"]


def test_the_web_form_takes_pasted_recipients() -> None:
    form = {"alias_id": "", "subject": "Hi", "text": "x", "recipients_text": "ann@example.org"}
    letter = letter_from_form(form, paste_box=True)
    assert letter.templates.alias_id is None and letter.skip_invalid is False
    assert [r.email for r in letter.rows()] == ["ann@example.org"]


def test_form_problems() -> None:
    with pytest.raises(ValidationError):
        letter_from_form({"subject": "", "file": Upload("a.csv", io.BytesIO(b"email\n"))})
    with pytest.raises(ValidationFailed) as exc:
        letter_from_form({"subject": "Hi", "text": Upload("t.txt", io.BytesIO(b"\xff"))})
    assert [(p.loc, p.msg) for p in exc.value.problems] == [
        (("body", "text"), "the file is not UTF-8 text")
    ]
    with pytest.raises(ValidationFailed) as exc:
        letter_from_form({"subject": "Hi", "text": "x"})
    assert [p.msg for p in exc.value.problems] == ["upload the recipients as a CSV file"]
