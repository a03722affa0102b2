"""Pydantic's validation errors as problems in plain words, for the API, the pages and the CLI.

Pydantic reports "Value should have at least 8 items after validation" or "Input should be
less than or equal to 3600000"; people read "must have at least 8 characters" and "must be at
most 3,600,000". Every edge turns errors into :class:`FieldProblem` entries here, so the
same mistake reads the same everywhere. No message ever echoes the submitted value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from sendas.errors import FieldProblem

# Pydantic's ``field_type`` for collections; anything else (str, SecretStr, bytes) is
# measured in characters.
_COLLECTIONS = frozenset({"List", "Tuple", "Set", "Frozenset", "Dictionary", "Iterable"})


class HasErrors(Protocol):
    """A pydantic ``ValidationError`` or FastAPI's ``RequestValidationError``."""

    def errors(self) -> Sequence[Any]: ...


def field_problems(exc: HasErrors, *, loc_prefix: tuple[str, ...] = ()) -> list[FieldProblem]:
    """One problem per error of ``exc``, with a plain message and ``loc`` as reported.

    ``loc_prefix`` goes in front of each ``loc``: ``("body",)`` when a model was validated
    by hand from a request body, so the 422 reads like FastAPI's own.
    """
    return plain_problems(exc.errors(), loc_prefix=loc_prefix)


def plain_problems(
    errors: Iterable[Mapping[str, Any]], *, loc_prefix: tuple[str, ...] = ()
) -> list[FieldProblem]:
    """Pydantic error dicts (``type``, ``loc``, ``msg``, ``ctx``) as problems in plain words."""
    return [
        FieldProblem(
            (*loc_prefix, *err.get("loc", ())), plain_message(err), str(err.get("type", ""))
        )
        for err in errors
    ]


def number(value: object) -> str:
    """A limit as people write it: ``3,600,000``, ``0.5``."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float | Decimal) and value == int(value):
        return f"{int(value):,}"
    return str(value)


def at_most(limit: object) -> str:
    return f"must be at most {number(limit)}"


def at_least(limit: object) -> str:
    return f"must be at least {number(limit)}"


def one_of(choices: Iterable[object]) -> str:
    return "must be one of: " + ", ".join(str(c) for c in choices)


def _length(bound: str, ctx: Mapping[str, Any]) -> str:
    key = "min_length" if bound == "least" else "max_length"
    count = ctx.get(key)
    unit = "item" if ctx.get("field_type") in _COLLECTIONS else "character"
    return f"must have at {bound} {number(count)} {unit}{'' if count == 1 else 's'}"


def _choices(expected: object) -> str:
    """``"'auto', 'implicit' or 'none'"`` (pydantic's wording) -> ``auto, implicit, none``."""
    parts = re.split(r", | or ", str(expected))
    return one_of(p.strip().strip("'\"") for p in parts if p.strip())


def _required_text(ctx: Mapping[str, Any]) -> str:
    # An empty box where text is needed reads as a missing value, as on a form.
    return "is required" if ctx.get("min_length") == 1 else _length("least", ctx)


# Message by pydantic error type; each gets the error's ``ctx`` (empty when absent).
_BY_TYPE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "missing": lambda _: "is required",
    "extra_forbidden": lambda _: "is not a known field",
    "json_invalid": lambda _: "is not valid JSON",
    "json_type": lambda _: "must be JSON text",
    "int_parsing": lambda _: "must be a whole number",
    "int_type": lambda _: "must be a whole number",
    "int_from_float": lambda _: "must be a whole number",
    "float_parsing": lambda _: "must be a number",
    "float_type": lambda _: "must be a number",
    "decimal_parsing": lambda _: "must be a number",
    "decimal_type": lambda _: "must be a number",
    "finite_number": lambda _: "must be a finite number",
    "bool_parsing": lambda _: "must be true or false",
    "bool_type": lambda _: "must be true or false",
    "string_type": lambda _: "must be text",
    "string_unicode": lambda _: "must be text",
    "string_pattern_mismatch": lambda _: "is not in the expected format",
    "list_type": lambda _: "must be a list",
    "tuple_type": lambda _: "must be a list",
    "set_type": lambda _: "must be a list",
    "dict_type": lambda _: "must be an object",
    "model_type": lambda _: "must be an object",
    "model_attributes_type": lambda _: "must be an object",
    "datetime_type": lambda _: "must be a date and time (ISO 8601)",
    "datetime_parsing": lambda _: "must be a date and time (ISO 8601)",
    "datetime_from_date_parsing": lambda _: "must be a date and time (ISO 8601)",
    "date_type": lambda _: "must be a date (YYYY-MM-DD)",
    "date_parsing": lambda _: "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": lambda _: "must be a date (YYYY-MM-DD)",
    "none_required": lambda _: "must be empty",
    "string_too_short": _required_text,
    "string_too_long": lambda ctx: _length("most", ctx),
    "too_short": lambda ctx: _length("least", ctx),
    "too_long": lambda ctx: _length("most", ctx),
    "less_than_equal": lambda ctx: at_most(ctx.get("le")),
    "less_than": lambda ctx: f"must be less than {number(ctx.get('lt'))}",
    "greater_than_equal": lambda ctx: at_least(ctx.get("ge")),
    "greater_than": lambda ctx: f"must be more than {number(ctx.get('gt'))}",
    "multiple_of": lambda ctx: f"must be a multiple of {number(ctx.get('multiple_of'))}",
    "literal_error": lambda ctx: _choices(ctx.get("expected", "")),
    "enum": lambda ctx: _choices(ctx.get("expected", "")),
}

# What is left of pydantic's own prefixes once the type gave no better wording.
_PREFIXES = (("Value error, ", ""), ("Assertion failed, ", ""), ("Input should be ", "must be "))


def plain_message(error: Mapping[str, Any]) -> str:
    """The message of one pydantic error dict in plain words.

    Our own validators raise ``ValueError("must not contain line breaks")``: their text is
    kept, without pydantic's "Value error, " in front.
    """
    ctx = error.get("ctx") or {}
    known = _BY_TYPE.get(str(error.get("type", "")))
    if known is not None:
        return known(ctx)
    msg = str(error.get("msg", "")) or "is not valid"
    for prefix, replacement in _PREFIXES:
        if msg.startswith(prefix):
            return replacement + msg[len(prefix) :]
    return msg


def problem_text(problems: Iterable[FieldProblem]) -> str:
    """``field: message; other.0: message`` for one line of text (the CLI's error)."""
    return "; ".join(f"{'.'.join(str(p) for p in pr.loc) or 'input'}: {pr.msg}" for pr in problems)
