"""Pydantic's errors in plain words: the messages people see in the API, pages and CLI."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from sendas.errors import FieldProblem
from sendas.schemas import AliasPatch, MessageIn, UserCreate
from sendas.validation import field_problems, number, plain_message, problem_text


def problems(model: type[BaseModel], data: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {p.loc: p.msg for p in field_problems(caught.value)}


def test_limits_in_plain_words():
    got = problems(AliasPatch, {"delay_ms": 4_000_000})
    assert got == {("delay_ms",): "must be at most 3,600,000"}
    assert problems(AliasPatch, {"delay_ms": -1}) == {("delay_ms",): "must be at least 0"}


def test_a_secret_too_short_counts_characters():
    got = problems(UserCreate, {"email": "a@example.org", "name": "A", "password": "short"})
    assert got == {("password",): "must have at least 8 characters"}


def test_a_list_too_long_counts_items():
    got = problems(MessageIn, {"to": ["a@example.org"] * 501})
    assert got == {("to",): "must have at most 500 items"}


def test_missing_extra_and_empty():
    got = problems(UserCreate, {"name": "", "nickname": "x"})
    assert got == {
        ("email",): "is required",
        ("name",): "is required",
        ("nickname",): "is not a known field",
    }


def test_whole_numbers_and_booleans():
    got = problems(AliasPatch, {"imap_account_id": "abc", "is_default": "maybe"})
    assert got == {
        ("imap_account_id",): "must be a whole number",
        ("is_default",): "must be true or false",
    }
    got = problems(AliasPatch, {"imap_account_id": 1.5, "delay_ms": "12"})
    assert got == {
        ("imap_account_id",): "must be a whole number",
        ("delay_ms",): "must be a whole number",
    }


def test_choices_are_listed():
    got = problems(AliasPatch, {"tls": "ssl", "auth": "kerberos"})
    assert got == {
        ("tls",): "must be one of: auto, implicit, starttls, none",
        ("auth",): "must be one of: password, google, microsoft",
    }


def test_our_own_validators_keep_their_words_without_pydantic_prefix():
    got = problems(AliasPatch, {"alias_name": "a\r\nBcc: x@example.org"})
    assert got == {("alias_name",): "must not contain a line break (U+000D)"}  # the builder's words
    got = problems(
        MessageIn,
        {"to": ["a@example.org"], "attachments": [{"filename": "a", "content_base64": "!"}]},
    )
    assert got == {("attachments", 0, "content_base64"): "is not valid base64"}


def test_loc_prefix_for_a_body_validated_by_hand():
    with pytest.raises(ValidationError) as caught:
        AliasPatch.model_validate({"delay_ms": -1})
    (problem,) = field_problems(caught.value, loc_prefix=("body",))
    assert problem.loc == ("body", "delay_ms") and problem.msg == "must be at least 0"


def test_invalid_json():
    with pytest.raises(ValidationError) as caught:
        UserCreate.model_validate_json("{bad")
    assert [p.msg for p in field_problems(caught.value)] == ["is not valid JSON"]


def test_type_and_loc_are_kept_and_the_value_never_echoed():
    with pytest.raises(ValidationError) as caught:
        UserCreate.model_validate({"email": "a@example.org", "name": "A", "password": "secret1"})
    (problem,) = field_problems(caught.value)
    assert problem == FieldProblem(("password",), "must have at least 8 characters", "too_short")
    assert "secret1" not in problem.msg


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # FastAPI's own wording for a body that does not parse.
        (
            {"type": "json_invalid", "loc": ("body", 1), "msg": "JSON decode error"},
            "is not valid JSON",
        ),
        ({"type": "value_error", "msg": "Value error, must be PEM text"}, "must be PEM text"),
        ({"type": "assertion_error", "msg": "Assertion failed, no"}, "no"),
        ({"type": "url_parsing", "msg": "Input should be a valid URL"}, "must be a valid URL"),
        ({"type": "greater_than", "ctx": {"gt": 0}}, "must be more than 0"),
        ({"type": "less_than", "ctx": {"lt": 1.5}}, "must be less than 1.5"),
        ({"type": "string_too_long", "ctx": {"max_length": 1}}, "must have at most 1 character"),
        ({"type": "enum", "ctx": {"expected": "'a', 'b' or 'c'"}}, "must be one of: a, b, c"),
        ({"type": "something_new", "msg": ""}, "is not valid"),
    ],
)
def test_plain_message(error: dict[str, Any], expected: str):
    assert plain_message(error) == expected


def test_number_groups_thousands():
    assert [number(3_600_000), number(2.0), number(0.5), number(True)] == [
        "3,600,000",
        "2",
        "0.5",
        "True",
    ]


def test_problem_text_is_one_line():
    text = problem_text([FieldProblem(("to", 0), "is required"), FieldProblem((), "bad")])
    assert text == "to.0: is required; input: bad"
