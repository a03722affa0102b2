"""Schema helpers that the forms use: the "delay between emails" box."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sendas.schemas import AliasPatch, parse_delay_ms
from sendas.validation import field_problems


def test_delay_parser_uses_the_same_words_as_the_api():
    assert parse_delay_ms("") == 0
    assert parse_delay_ms("  ") == 0
    assert parse_delay_ms("2,500") == 2500
    assert parse_delay_ms("1_000") == 1000
    assert parse_delay_ms("3 600 000") == 3_600_000
    for junk in ("abc", "-5", "1.5", "²"):
        with pytest.raises(ValueError, match=r"^must be a whole number of milliseconds"):
            parse_delay_ms(junk)
    with pytest.raises(ValueError) as over:
        parse_delay_ms("3,600,001")
    with pytest.raises(ValidationError) as api:
        AliasPatch.model_validate({"delay_ms": 3_600_001})
    assert str(over.value) == field_problems(api.value)[0].msg == "must be at most 3,600,000"
