"""Form-letter templates: fields, sandbox, escaping, strictness, and the composed message."""

from __future__ import annotations

import email
import email.policy
import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from sendas.context import AppContext
from sendas.db.models import Message
from sendas.errors import TemplateError, ValidationFailed
from sendas.merge import Recipient, compile_templates, preview, render_message
from sendas.sandbox import Limits
from sendas.schemas import AliasCreate, CampaignTemplatesIn, RecipientIn
from sendas.services import aliases as alias_service
from sendas.services.campaigns.check import Checker
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.recipients import RowSource, csv_rows, json_rows
from sendas.services.common import Actor
from tests.conftest import Person

ANN = Recipient("ann@example.org", {"first": "Ann", "company": "Acme & Co", "n": "3"})


def test_three_ways_to_reach_a_value():
    t = compile_templates(
        "{{ first }}", "{{ fields.first }}|{{ fields['company'] }}|{{ email }}", None
    )
    r = t.render(ANN)
    assert r.subject == "Ann"
    assert r.text == "Ann|Acme & Co|ann@example.org"
    assert r.html is None


def test_html_is_escaped_and_text_is_not():
    r = preview("s", "{{ company }}", "<p>{{ company }}</p>", ANN)
    assert r.text == "Acme & Co"
    assert r.html == "<p>Acme &amp; Co</p>"


def test_required_fields_in_order_of_use_and_builtins_excluded():
    t = compile_templates(
        "{{ first }}",
        "{{ email }} {{ fields.last }} {% for x in items %}{{ x.name }}{% endfor %}"
        "{% set local = 1 %}{{ local }} {{ fields.get('optional', '-') }}",
        "{{ fields['odd name'] }}",
    )
    assert t.required == ("first", "last", "items", "odd name")
    assert t.part_of("odd name") == "html"
    assert t.missing({"first": 1, "last": 2, "items": []}) == "odd name"


def test_method_call_on_fields_is_not_a_field():
    t = compile_templates("x", "{{ fields.get('nick', first) }}", None)
    assert t.required == ("first",)
    assert t.render(ANN).text == "Ann"


def test_check_names_field_and_recipient():
    t = compile_templates("Hi {{ nickname }}", "", None)
    with pytest.raises(TemplateError) as info:
        t.check(ANN, "line 2")
    assert info.value.field == "nickname"
    assert info.value.recipient == "ann@example.org"
    assert "line 2" in str(info.value)


def test_strict_undefined_at_render():
    t = compile_templates("x", "{{ fields.first.missing_attr }}", None)
    with pytest.raises(TemplateError) as info:
        t.render(ANN)
    assert info.value.recipient == "ann@example.org"


@pytest.mark.parametrize(
    "source",
    [
        "{{ email.__class__ }}",
        "{{ fields.__class__.__mro__ }}",
        "{{ ''.__class__.__base__.__subclasses__() }}",
        "{{ fields.update({'x': 1}) }}",  # the values are immutable
        "{{ 'a' * 10000000 }}",
        "{{ 10 ** 100000 }}",
        "{% for i in range(10000000) %}{% endfor %}",
    ],
)
def test_sandbox_refuses(source: str):
    with pytest.raises(TemplateError) as info:
        compile_templates("x", source, None).render(ANN)
    assert info.value.field == "text"


def test_subject_must_not_contain_line_breaks():
    with pytest.raises(TemplateError) as info:
        compile_templates("Hi\n{{ first }}", "", None).render(ANN)
    assert info.value.field == "subject"
    bad = Recipient("ann@example.org", {"first": "Ann\r\nBcc: victim@example.com"})
    with pytest.raises(TemplateError):
        compile_templates("Hi {{ first }}", "", None).check(bad, "line 2")
    # a line break in the body is fine
    assert compile_templates("s", "{{ first }}", None).render(bad).text.startswith("Ann\r\n")


def test_syntax_error_names_the_part_and_line():
    with pytest.raises(TemplateError) as info:
        compile_templates("ok", "line one\n{{ broken ", None)
    assert info.value.field == "text"
    assert "line 2" in str(info.value)


def test_preview_checks_fields_first():
    with pytest.raises(TemplateError) as info:
        preview("s", "{{ zip }}", None, ANN)
    assert info.value.field == "zip"


# --- render_message: what the outbox submits ------------------------------------------------


def make_alias(ctx: AppContext, who: Person) -> Actor:
    actor = Actor(who.id, who.email, False)
    with ctx.db.write() as s:
        alias_service.create_alias(
            s,
            actor,
            AliasCreate(
                description="Work",
                alias_name="Alice Example",
                from_address="alice@example.com",
                reply_to="replies@example.com",
                smtp_server="mail.example.com:465",
            ),
            ctx.secrets,
        )
    return actor


def make_campaign(ctx: AppContext, who: Person, rows: RowSource, **data: str) -> int:
    actor = make_alias(ctx, who)
    values = {"subject": "Hello {{ first }}", "text": "Dear {{ first }}", **data}
    created = create_campaign(ctx.db, actor, CampaignTemplatesIn.model_validate(values), rows)
    return created.id


def test_render_message_composes_for_the_recipient(ctx: AppContext, alice: Person):
    rows = json_rows([RecipientIn(email="ann@example.org", fields={"first": "Ann <3"})])
    make_campaign(ctx, alice, rows, html="<p>{{ first }}</p>")
    with ctx.db.write() as s:
        message = s.scalars(select(Message)).one()
        raw = render_message(s, message)
        assert message.subject == "Hello Ann <3"
        assert message.message_id.startswith("<")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"] == "ann@example.org"
    assert parsed["From"] == "Alice Example <alice@example.com>"
    assert parsed["Reply-To"] == "replies@example.com"
    assert parsed["Subject"] == "Hello Ann <3"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and text.get_content().strip() == "Dear Ann <3"
    assert html is not None and html.get_content().strip() == "<p>Ann &lt;3</p>"


# --- a large CSV streams ------------------------------------------------------------------


def _csv_lines(n: int) -> Iterator[str]:
    yield "email,first,last,company\n"
    for i in range(n):
        yield f"user{i}@example.com,First{i},Last{i},Company {i % 97}\n"
    yield "broken-address,x,y,z\n"


class PeakRss:
    """Samples this process's resident memory in a thread; ``growth`` is peak minus start."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def test_large_csv_is_enqueued_without_holding_it(ctx: AppContext, alice: Person, tmp_path: Path):
    n = 200_000
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.writelines(_csv_lines(n))
    size = path.stat().st_size
    actor = make_alias(ctx, alice)
    data = CampaignTemplatesIn(subject="Hi {{ first }}", text="{{ last }} of {{ company }}")
    gc.collect()
    with PeakRss() as rss:
        # The bad last line refuses the whole list, found only by reading to the end.
        with pytest.raises(ValidationFailed) as info:
            create_campaign(ctx.db, actor, data, csv_rows(lambda: path.open("rb")))
        assert info.value.problems[0].msg.startswith(f"line {n + 2}:")
        created = create_campaign(
            ctx.db, actor, data, csv_rows(lambda: path.open("rb")), skip_invalid=True
        )
    assert created.total == n and created.invalid_count == 1
    with ctx.db.read() as s:
        assert s.scalar(select(func.count()).where(Message.campaign_id == created.id)) == n
        last = s.scalars(
            select(Message).options(selectinload(Message.body)).order_by(Message.id.desc()).limit(1)
        ).one()
    assert last.to_addrs == [f"user{n - 1}@example.com"]
    assert last.merge_fields == {
        "first": f"First{n - 1}",
        "last": f"Last{n - 1}",
        "company": f"Company {(n - 1) % 97}",
    }
    # 200,000 parsed rows held at once would take well over 100 MB (dicts, strings);
    # a streamed import holds one chunk of 5,000 plus SQLite's page cache.
    assert size > 10_000_000
    assert rss.growth < 40_000_000, (rss.growth, size)


# --- limits of time and size per recipient (issue 11, item 2) ----------------------------------

SMALL = Limits(seconds=0.3, max_output=10_000)


@pytest.mark.parametrize(
    ("source", "said"),
    [
        # time: nested loops, runaway recursion that fans out
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            "took longer than 0.3 s to render for this recipient",
        ),
        (
            "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
            "{{ f(40) }}",
            "took longer than 0.3 s to render for this recipient",
        ),
        # format widths and precisions
        ("{{ '%50000000d'|format(1) }}", "a format width or precision over 1000"),
        ("{{ '%.50000000f' % 1 }}", "a format width or precision over 1000"),
        ("{{ '{:50000000}'.format(1) }}", "a format width or precision over 1000"),
        ("{{ '%*d'|format(50000000, 1) }}", "a '*' width in a format"),
        ("{{ 'x'|center(50000000) }}", "a width over 1000"),
        # repetition and growth
        ("{{ first * 50000000 }}", "a result longer than 100000 items"),
        ("{{ [1] * 50000000 }}", "a result longer than 100000 items"),
        ("{{ range(100001) }}", "a range of more than 10000 items"),
        ("{{ range(10000)|join('x' * 90000) }}", "output is over 10000 characters"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "output is over 10000 characters",
        ),
        ("{% set a = 'x' * 9000 %}{{ (a ~ a ~ a)|length }}", "output is over 10000 characters"),
        ("{{ ('x' * 9000)|replace('x', 'yy') }}", "output is over 10000 characters"),
        # output size
        ("{% for i in range(10000) %}{{ first }}{% endfor %}", "output is over 10000 characters"),
    ],
)
def test_render_stops_at_the_limits(source: str, said: str):
    with pytest.raises(TemplateError) as info:
        compile_templates("x", source, None).render(ANN, SMALL)
    assert said in str(info.value)
    assert info.value.field == "text"


def test_within_the_limits_templates_render_as_before():
    source = (
        "{{ '%5d'|format(3) }}|{{ '{:>4}'.format(first) }}|{{ range(3)|join(',') }}|{{ first * 2 }}"
    )
    assert compile_templates("x", source, None).render(ANN, SMALL).text == "    3| Ann|0,1,2|AnnAnn"


def test_a_render_that_ignores_the_sandbox_clock_is_stopped_by_its_process():
    """Nested loops over a list call nothing the sandbox sees: the process stops it."""
    source = (
        "{% set l = range(10000)|list %}{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}"
    )
    checker = Checker(SMALL, 1, 30.0)
    try:
        slow, fast = checker.many(
            (source, "", None), [("ann@example.org", {}), ("ben@example.org", {})], 1e12
        )
        assert slow.over_budget and slow.subject is None
        assert slow.problem == "the template took longer than 0.3 s to render for this recipient"
        assert fast.over_budget  # the same template for the next recipient
    finally:
        checker.close()
