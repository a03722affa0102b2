"""Form letters over the API: creation (JSON and CSV), progress, pause/resume/cancel, search."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from sendas.context import AppContext
from sendas.db.models import Campaign, Lane, Message
from sendas.outbox.completion import complete_if_done
from sendas.outbox.counts import recount
from tests.conftest import Person

ALIAS: dict[str, Any] = {
    "description": "Work",
    "alias_name": "Alice Example",
    "from_address": "alice@example.com",
    "smtp_server": "mail.example.com:465",
    "smtp_username": "alice@example.com",
    "smtp_password": "s3cret-Pa55",
}


def make_alias(client: TestClient, who: Person, **over: Any) -> int:
    body = {**ALIAS, "from_address": who.email, **over}
    r = client.post("/api/aliases", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    alias_id: int = r.json()["id"]
    return alias_id


def letter(**over: Any) -> dict[str, Any]:
    return {
        "subject": "Hello {{ first }}",
        "text": "Dear {{ fields.first }} {{ last }}, write to {{ email }}.",
        "html": "<p>Dear {{ first }}</p>",
        "recipients": [
            {"email": "ann@example.org", "fields": {"first": "Ann", "last": "A"}},
            {"email": "ben@example.org", "fields": {"first": "Ben", "last": "B"}},
            {"email": "cat@example.org", "fields": {"first": "Cat", "last": "C"}},
        ],
        **over,
    }


def upload(client: TestClient, who: Person, csv_text: str, **form: Any) -> Any:
    data = {"subject": "Hi {{ first }}", "text": "Dear {{ first }}", **form}
    files = {"file": ("list.csv", io.BytesIO(csv_text.encode()), "text/csv")}
    return client.post("/api/campaigns", data=data, files=files, headers=who.headers)


def message_rows(ctx: AppContext) -> list[Message]:
    with ctx.db.read() as s:
        return list(
            s.scalars(select(Message).options(selectinload(Message.body)).order_by(Message.id))
        )


def count_messages(ctx: AppContext) -> int:
    with ctx.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Message)) or 0)


# --- creation -------------------------------------------------------------------------------


def test_json_campaign_queues_one_message_per_recipient(
    client: TestClient, ctx: AppContext, alice: Person
):
    alias_id = make_alias(client, alice)
    r = client.post("/api/campaigns", json=letter(), headers=alice.headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "running"
    assert body["alias_id"] == alias_id  # the default alias
    assert body["total"] == 3
    assert body["counts"]["queued"] == 3
    assert body["invalid_count"] == 0
    rows = message_rows(ctx)
    assert [m.to_addrs for m in rows] == [
        ["ann@example.org"],
        ["ben@example.org"],
        ["cat@example.org"],
    ]
    assert {m.lane for m in rows} == {f"alias:{alias_id}"}
    assert {m.kind for m in rows} == {"campaign"}
    assert {m.status for m in rows} == {"queued"}
    assert rows[0].merge_fields == {"first": "Ann", "last": "A"}
    assert rows[0].raw is None
    assert rows[0].envelope_from == "alice@example.com"


def test_unknown_field_names_field_and_first_recipient_lacking_it(
    client: TestClient, ctx: AppContext, alice: Person
):
    make_alias(client, alice)
    body = letter(text="Hi {{ fields.nickname }}")
    body["recipients"][1]["fields"]["nickname"] = "Benny"
    r = client.post("/api/campaigns", json=body, headers=alice.headers)
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "text"]
    assert "nickname" in problem["msg"] and "ann@example.org" in problem["msg"]
    assert count_messages(ctx) == 0


def test_unknown_field_refused_even_with_skip_invalid(
    client: TestClient, ctx: AppContext, alice: Person
):
    make_alias(client, alice)
    r = upload(
        client,
        alice,
        "email,first\nann@example.org,Ann\n",
        text="{{ missing_one }}",
        skip_invalid="true",
    )
    assert r.status_code == 422
    assert "missing_one" in r.text and "ann@example.org" in r.text
    assert count_messages(ctx) == 0


def test_template_syntax_error_is_422_on_the_part(client: TestClient, alice: Person):
    make_alias(client, alice)
    r = client.post("/api/campaigns", json=letter(html="<p>{{ first </p>"), headers=alice.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "html"]


def test_json_bad_address_is_reported_per_recipient(
    client: TestClient, ctx: AppContext, alice: Person
):
    make_alias(client, alice)
    body = letter()
    body["recipients"][1]["email"] = "not-an-address"
    r = client.post("/api/campaigns", json=body, headers=alice.headers)
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "recipients", 1, "email"]]
    assert count_messages(ctx) == 0
    r = client.post("/api/campaigns", json={**body, "skip_invalid": True}, headers=alice.headers)
    assert r.status_code == 202
    assert r.json()["total"] == 2
    assert r.json()["invalid_lines"][0]["line"] == 2


def test_csv_bad_lines_are_reported_by_number_and_nothing_queued(
    client: TestClient, ctx: AppContext, alice: Person
):
    make_alias(client, alice)
    csv_text = (
        "email,first,note\n"  # line 1
        "ann@example.org,Ann,\n"  # 2
        "nobody,Nobody,\n"  # 3: not an address
        "ben@example.org,Ben,,extra\n"  # 4: wrong column count
        "\n"  # 5: blank, ignored
        '"cat@example.org",Cat,"a note\nover two lines"\n'  # 6-7: one record
        "dan@example.org,Dan\n"  # 8: too few columns
    )
    r = upload(client, alice, csv_text)
    assert r.status_code == 422
    msgs = [e["msg"] for e in r.json()["detail"]]
    assert [m.split(":")[0] for m in msgs] == ["line 3", "line 4", "line 8"]
    assert "expected 3 columns, found 4" in msgs[1]
    assert count_messages(ctx) == 0


def test_csv_skip_invalid_queues_the_rest_and_lists_bad_lines(
    client: TestClient, ctx: AppContext, alice: Person
):
    make_alias(client, alice)
    csv_text = "Email,first\nann@example.org,Ann\nnobody,No\nben@example.org,Ben\n"
    r = upload(client, alice, csv_text, skip_invalid="true")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["total"] == 2
    assert body["invalid_count"] == 1
    assert body["invalid_lines"] == [
        {"line": 3, "email": "nobody", "reason": body["invalid_lines"][0]["reason"]}
    ]
    assert [m.to_addrs[0] for m in message_rows(ctx)] == ["ann@example.org", "ben@example.org"]
    assert message_rows(ctx)[1].merge_fields == {"first": "Ben"}


def test_csv_header_needs_an_email_column(client: TestClient, ctx: AppContext, alice: Person):
    make_alias(client, alice)
    r = upload(client, alice, "address,first\nann@example.org,Ann\n")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert "email" in r.json()["detail"][0]["msg"]
    assert count_messages(ctx) == 0


def test_subject_line_break_from_a_field_is_a_bad_row(
    client: TestClient, ctx: AppContext, alice: Person
):
    make_alias(client, alice)
    csv_text = 'email,first\nann@example.org,"A\r\nBcc: x@evil"\nben@example.org,Ben\n'
    r = upload(client, alice, csv_text)
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"].startswith("line 2:")
    assert count_messages(ctx) == 0


def test_other_users_alias_is_refused(
    client: TestClient, ctx: AppContext, alice: Person, bob: Person
):
    bob_alias = make_alias(client, bob)
    make_alias(client, alice)
    r = client.post("/api/campaigns", json=letter(alias_id=bob_alias), headers=alice.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "alias_id"]
    assert count_messages(ctx) == 0


def test_without_an_alias_is_422(client: TestClient, alice: Person):
    r = client.post("/api/campaigns", json=letter(), headers=alice.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "alias_id"]


def test_needs_a_token(client: TestClient):
    assert client.post("/api/campaigns", json=letter()).status_code == 401
    assert client.get("/api/campaigns/1").status_code == 401


# --- preview ---------------------------------------------------------------------------------


def test_preview_renders_one_recipient(client: TestClient, alice: Person):
    r = client.post(
        "/api/campaigns/preview",
        json={
            "subject": "Hi {{ first }}",
            "text": "Text {{ fields.first }} <{{ email }}>",
            "html": "<b>{{ first }}</b>",
            "recipient": {"email": "ann@example.org", "fields": {"first": "<Ann & co>"}},
        },
        headers=alice.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "subject": "Hi <Ann & co>",
        "text": "Text <Ann & co> <ann@example.org>",
        "html": "<b>&lt;Ann &amp; co&gt;</b>",
    }


def test_preview_names_the_missing_field(client: TestClient, alice: Person):
    r = client.post(
        "/api/campaigns/preview",
        json={
            "subject": "Hi",
            "text": "{{ company }}",
            "recipient": {"email": "ann@example.org", "fields": {}},
        },
        headers=alice.headers,
    )
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "text"] and "company" in problem["msg"]


def test_preview_refuses_sandbox_escape(client: TestClient, alice: Person):
    r = client.post(
        "/api/campaigns/preview",
        json={
            "subject": "x",
            "text": "{{ email.__class__.__mro__ }}",
            "recipient": {"email": "ann@example.org"},
        },
        headers=alice.headers,
    )
    assert r.status_code == 422
    assert "__mro__" not in r.json()["detail"][0]["msg"] or "unsafe" in r.json()["detail"][0]["msg"]


# --- progress, pause, resume, cancel -----------------------------------------------------------


def create(client: TestClient, who: Person) -> dict[str, Any]:
    r = client.post("/api/campaigns", json=letter(), headers=who.headers)
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


def set_status(ctx: AppContext, campaign_id: int, status: str, n: int, **values: Any) -> None:
    with ctx.db.write() as s:
        ids = list(
            s.scalars(
                select(Message.id)
                .where(Message.campaign_id == campaign_id, Message.status == "queued")
                .order_by(Message.id)
                .limit(n)
            )
        )
        s.execute(update(Message).where(Message.id.in_(ids)).values(status=status, **values))
        recount(s, campaign_id)
        # As the outbox does when it records outcomes: in the same transaction.
        complete_if_done(s, s.get_one(Campaign, campaign_id))


def test_counts_rate_and_completion(client: TestClient, ctx: AppContext, alice: Person):
    make_alias(client, alice)
    c = create(client, alice)
    set_status(ctx, c["id"], "sent", 2, sent_at=datetime.now(UTC))
    body = client.get(f"/api/campaigns/{c['id']}", headers=alice.headers).json()
    assert body["counts"] == {
        "queued": 1,
        "sending": 0,
        "sent": 2,
        "retrying": 0,
        "failed": 0,
        "unknown": 0,
        "cancelled": 0,
        "bounced": 0,
    }
    assert body["status"] == "running"
    assert body["rate"] > 0 and body["eta_seconds"] is not None
    set_status(ctx, c["id"], "failed", 1)
    body = client.get(f"/api/campaigns/{c['id']}", headers=alice.headers).json()
    assert body["status"] == "completed"
    assert body["completed_at"] is not None
    assert body["counts"]["failed"] == 1
    r = client.post(f"/api/campaigns/{c['id']}/pause", headers=alice.headers)
    assert r.status_code == 409


def test_pause_resume_cancel_change_state(client: TestClient, ctx: AppContext, alice: Person):
    make_alias(client, alice)
    c = create(client, alice)
    r = client.post(f"/api/campaigns/{c['id']}/pause", headers=alice.headers)
    assert r.status_code == 200
    assert r.json()["status"] == "paused" and r.json()["paused_reason"]
    with ctx.db.read() as s:
        assert s.get(Campaign, c["id"]).status == "paused"  # type: ignore[union-attr]
    r = client.post(f"/api/campaigns/{c['id']}/resume", headers=alice.headers)
    assert r.json()["status"] == "running" and r.json()["paused_reason"] is None
    set_status(ctx, c["id"], "sending", 1)
    r = client.post(f"/api/campaigns/{c['id']}/cancel", headers=alice.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "cancelled"
    # the message already handed to the worker finishes; the others are cancelled
    assert body["counts"]["cancelled"] == 2 and body["counts"]["sending"] == 1
    assert sorted(m.status for m in message_rows(ctx)) == ["cancelled", "cancelled", "sending"]
    r = client.post(f"/api/campaigns/{c['id']}/resume", headers=alice.headers)
    assert r.status_code == 409


def test_lane_pause_shows_as_paused_reason(client: TestClient, ctx: AppContext, alice: Person):
    alias_id = make_alias(client, alice)
    c = create(client, alice)
    with ctx.db.write() as s:
        s.merge(
            Lane(
                name=f"alias:{alias_id}",
                paused_until=datetime.now(UTC) + timedelta(hours=1),
                paused_reason="421 4.7.0 too many messages",
                needs_attention=False,
            )
        )
    body = client.get(f"/api/campaigns/{c['id']}", headers=alice.headers).json()
    assert "421 4.7.0" in body["paused_reason"]
    with ctx.db.write() as s:
        s.merge(
            Lane(
                name=f"alias:{alias_id}",
                paused_until=None,
                paused_reason=None,
                needs_attention=True,
            )
        )
    body = client.get(f"/api/campaigns/{c['id']}", headers=alice.headers).json()
    assert "attention" in body["paused_reason"]


def test_another_users_campaign_is_404(client: TestClient, alice: Person, bob: Person):
    make_alias(client, alice)
    c = create(client, alice)
    for method, path in [
        ("get", ""),
        ("post", "/pause"),
        ("post", "/resume"),
        ("post", "/cancel"),
        ("get", "/messages"),
    ]:
        r = client.request(method, f"/api/campaigns/{c['id']}{path}", headers=bob.headers)
        assert r.status_code == 404, (method, path)
    assert client.get(f"/api/campaigns/{c['id']}", headers=alice.headers).json()["status"] == (
        "running"
    )
    assert client.get("/api/campaigns/9999", headers=alice.headers).status_code == 404


def test_messages_filter_by_status_and_search(client: TestClient, ctx: AppContext, alice: Person):
    make_alias(client, alice)
    c = create(client, alice)
    set_status(ctx, c["id"], "failed", 1, server_reply="550 5.1.1 no such user", hint="check it")
    url = f"/api/campaigns/{c['id']}/messages"
    everything = client.get(url, headers=alice.headers).json()
    assert [m["email"] for m in everything["items"]] == [
        "ann@example.org",
        "ben@example.org",
        "cat@example.org",
    ]
    failed = client.get(url, params={"status": "failed"}, headers=alice.headers).json()["items"]
    assert [(m["email"], m["server_reply"]) for m in failed] == [
        ("ann@example.org", "550 5.1.1 no such user")
    ]
    found = client.get(url, params={"q": "BEN@"}, headers=alice.headers).json()["items"]
    assert [m["email"] for m in found] == ["ben@example.org"]
    page = client.get(url, params={"limit": 2}, headers=alice.headers).json()
    assert len(page["items"]) == 2 and page["next_after_id"] is not None
    rest = client.get(url, params={"after_id": page["next_after_id"]}, headers=alice.headers)
    assert [m["email"] for m in rest.json()["items"]] == ["cat@example.org"]
    r = client.get(url, params={"status": "bogus"}, headers=alice.headers)
    assert r.status_code == 422


@pytest.mark.parametrize("bad", [{"subject": ""}, {"recipients": []}, {"bogus": 1}])
def test_schema_errors_are_422_per_field(
    client: TestClient, ctx: AppContext, alice: Person, bad: dict[str, Any]
):
    make_alias(client, alice)
    r = client.post("/api/campaigns", json=letter(**bad), headers=alice.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][0] == "body"
    assert count_messages(ctx) == 0


# --- bounded templates (issue 11, item 2) ------------------------------------------------------

# Slow only for the recipient whose "n" field is large: 10^8 steps of nested loops.
SLOW_FOR_BIG_N = (
    "{% for i in range(n|int) %}{% for j in range(n|int) %}{% endfor %}{% endfor %}Hi {{ first }}"
)


def test_every_row_is_rendered_before_queueing_and_failures_name_the_rows(
    client: TestClient, ctx: AppContext, alice: Person
):
    ctx.settings.template_render_timeout = 0.5
    make_alias(client, alice)
    recipients = [
        {"email": "ann@example.org", "fields": {"first": "Ann", "n": "1"}},
        {"email": "ben@example.org", "fields": {"first": "Ben", "n": "10000"}},  # slow
        {"email": "cat@example.org", "fields": {"first": "Cat", "n": "1"}},
        {"email": "dan@example.org", "fields": {"first": "Dan", "n": "%"}},  # cannot render
    ]
    # n="%" gives 0: a division by zero
    body = {"subject": "Hello {{ 100 // (n|int) }}", "text": SLOW_FOR_BIG_N}
    r = client.post(
        "/api/campaigns", json={**body, "recipients": recipients}, headers=alice.headers
    )
    assert r.status_code == 422, r.text
    problems = r.json()["detail"]
    assert [p["loc"] for p in problems] == [["body", "recipients", 1], ["body", "recipients", 3]]
    assert problems[0]["msg"].startswith("recipient 2: text: the template took longer than 0.5 s")
    assert problems[1]["msg"].startswith("recipient 4: subject: ZeroDivisionError")
    assert message_rows(ctx) == []


def test_rows_over_the_output_limit_fail_by_number(
    client: TestClient, ctx: AppContext, alice: Person
):
    ctx.settings.template_max_output = 5_000
    make_alias(client, alice)
    csv_text = "email,size\nann@example.org,10\nben@example.org,9000\n"
    r = upload(
        client, alice, csv_text, subject="Hi", text="{% for i in range(size|int) %}xx{% endfor %}"
    )
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["msg"] == (
        "line 3: text: the rendered output is over 5000 characters for this recipient"
    )
    assert message_rows(ctx) == []


def test_every_message_stores_its_rendered_subject_when_queued(
    client: TestClient, ctx: AppContext, alice: Person
):
    make_alias(client, alice)
    r = client.post("/api/campaigns", json=letter(), headers=alice.headers)
    assert r.status_code == 202, r.text
    assert [m.subject for m in message_rows(ctx)] == ["Hello Ann", "Hello Ben", "Hello Cat"]
    # cancelled before any send, they keep it: the Sent log never says "(no subject)"
    assert client.post(f"/api/campaigns/{r.json()['id']}/cancel", headers=alice.headers).is_success
    assert {(m.status, m.subject) for m in message_rows(ctx)} == {
        ("cancelled", "Hello Ann"),
        ("cancelled", "Hello Ben"),
        ("cancelled", "Hello Cat"),
    }


def test_more_rows_than_the_cap_is_422(client: TestClient, ctx: AppContext, alice: Person):
    ctx.settings.template_check_max_rows = 2
    make_alias(client, alice)
    r = client.post("/api/campaigns", json=letter(), headers=alice.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "more than 2 recipients (SENDAS_TEMPLATE_CHECK_MAX_ROWS)"
    assert message_rows(ctx) == []


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (SLOW_FOR_BIG_N, "text: the template took longer than 0.5 s to render for this recipient"),
        ("{{ '%50000000d'|format(1) }}", "a format width or precision over 1000"),
        ("{{ 'x' * 50000000 }}", "a result longer than 100000 items"),
        ("{% for i in range(9000) %}{{ 'y' * 9000 }}{% endfor %}", "the rendered output is over"),
    ],
)
def test_preview_has_the_same_limits(
    client: TestClient, ctx: AppContext, alice: Person, text: str, said: str
):
    ctx.settings.template_render_timeout = 0.5
    r = client.post(
        "/api/campaigns/preview",
        json={
            "subject": "x",
            "text": text,
            "recipient": {"email": "ann@example.org", "fields": {"first": "A", "n": "10000"}},
        },
        headers=alice.headers,
    )
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "text"] and said in problem["msg"]
