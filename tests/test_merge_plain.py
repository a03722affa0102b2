"""Plain form letters are checked without Jinja: the same subject and size as Jinja's
render, and anything else left to the sandboxed render."""

from __future__ import annotations

from sendas.merge import Recipient, compile_templates
from sendas.merge_plain import plain_letter
from sendas.sandbox import Limits

LIMITS = Limits()
ANN = Recipient("ann@example.com", {"first": "Ann <&>", "last": "O'Neil", "x y": "1"})


def test_a_plain_letter_renders_as_jinja_does() -> None:
    subject, text = "Hi {{ first }} {{ fields['x y'] }}", "Dear {{ fields.first }} ({{ email }})\n"
    html = "<p>{{ first }} {{ last }}</p>"
    letter = plain_letter(subject, text, html, LIMITS, ANN)
    assert letter is not None
    want = compile_templates(subject, text, html).render(ANN)
    assert letter.subject(ANN.email, ANN.fields) == want.subject == "Hi Ann <&> 1"
    other = Recipient("bo@example.org", {"first": "Bo", "last": "<b>", "x y": "2"})
    assert letter.subject(other.email, other.fields) == "Hi Bo 2"


def test_templates_with_more_than_holes_are_not_plain() -> None:
    for text in ("{{ first|upper }}", "{% if first %}x{% endif %}", "{{ fields.items }}",
                 "{{ first ~ last }}", "{{ fields }}", "{{ 'x' }}"):  # fmt: skip
        assert plain_letter("Hi", text, None, LIMITS, ANN) is None, text


def test_values_that_are_not_strings_or_too_long_go_the_sandboxed_way() -> None:
    letter = plain_letter("Hi {{ first }}", "{{ last }}", None, Limits(max_output=40), ANN)
    assert letter is not None
    assert letter.subject("a@example.com", {"first": 3, "last": "x"}) is None
    assert letter.subject("a@example.com", {"first": "A", "last": "x" * 40}) is None
    assert letter.subject("a@example.com", {"first": "A", "last": "x"}) == "Hi A"


def test_a_line_break_in_the_subject_is_left_to_the_sandboxed_render() -> None:
    letter = plain_letter("Hi {{ first }}", "text", None, LIMITS, ANN)
    assert letter is not None
    assert letter.subject("a@example.com", {"first": "A\nB"}) is None
