"""Statements that name messages by id (or Message-ID) and also check their status find
them by that key (``tables.unindexed``): SQLite would otherwise plan them on
``ix_messages_claim`` and read every queued message of the database for each chunk
marked ``sending``, or on ``ix_messages_user_status`` and read a user's whole history for
each bounce. And the row updates the outbox runs as driver-level executemanys convert
every type as the ORM would, on both databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select, update

from sendas.context import AppContext
from sendas.db.models import Message, MessageBody, utcnow
from sendas.outbox.bounces.apply import apply_report, unrecorded
from sendas.outbox.bounces.detect import Report
from sendas.outbox.config import OutboxConfig
from sendas.outbox.late import defer_late
from sendas.outbox.marking import MarkRequest, mark_many, release_messages
from sendas.outbox.tables import store_raw, update_rows
from sendas.statuses import MessageStatus
from tests.conftest import make_actor
from tests.outbox.conftest import sink_alias
from tests.outbox.test_crash import form_letter

OWNER = "plan-test:1:abcd"


@contextmanager
def statements(ctx: AppContext) -> Iterator[list[tuple[str, Any]]]:
    """The SQL run on the engine meanwhile, with its parameters (the first set of an
    executemany)."""
    seen: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        seen.append((sql, params[0] if many else params))

    event.listen(ctx.db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", note)


def plans_by_id(ctx: AppContext, seen: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(statement, its query plan) of each statement naming messages by id."""
    out = []
    raw = ctx.db.engine.raw_connection()
    try:
        for sql, params in seen:
            if "messages.id IN" not in sql and "messages.message_id IN" not in sql:
                continue
            rows = raw.cursor().execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            out.append((sql, " | ".join(str(r[-1]) for r in rows)))
    finally:
        raw.close()
    return out


def _letter_of_300(ctx: AppContext) -> int:
    """A form letter of 300 queued messages (nothing connects: no server needed); its
    owner's id."""
    actor = make_actor(ctx, "plans@example.com")
    form_letter(ctx, actor, sink_alias(ctx, actor, 2525, "plans", 0), 300)
    return actor.id


def test_claimed_messages_are_found_by_primary_key_among_many_queued(
    ctx: AppContext,
) -> None:
    _letter_of_300(ctx)
    lease = {"lease_owner": OWNER, "lease_expires_at": utcnow() + timedelta(minutes=5)}
    with ctx.db.write() as s:
        ids = [i for (i,) in s.execute(update(Message).values(**lease).returning(Message.id))]
    now = utcnow()
    steps: list[Callable[[Any], Any]] = [
        lambda s: mark_many(s, [MarkRequest(OWNER, ids[:40], now, 60.0)]),
        lambda s: release_messages(s, OWNER, ids[:20], was_sending=True),
        lambda s: release_messages(s, OWNER, ids[40:80], was_sending=False),
        lambda s: defer_late(s, OWNER, {i: "late" for i in ids[80:90]}, now, OutboxConfig()),
    ]
    with statements(ctx) as seen:
        for step in steps:
            with ctx.db.write() as s:
                step(s)
    plans = plans_by_id(ctx, seen)
    # Each step names messages by id at least once (the select, or the update itself).
    assert len(plans) >= len(steps), plans
    for sql, plan in plans:
        assert "ix_messages_claim" not in plan, (sql, plan)
        assert "PRIMARY KEY" in plan, (sql, plan)


def test_a_bounce_finds_its_messages_by_message_id_not_by_the_users_history(
    ctx: AppContext,
) -> None:
    user_id = _letter_of_300(ctx)
    with ctx.db.write() as s:
        s.execute(update(Message).values(status="sent", message_id=Message.id.concat("@x")))
    report = Report("bounce", ("1@x", "2@x"))
    with statements(ctx) as seen, ctx.db.write() as s:
        apply_report(s, user_id, report, utcnow())
        unrecorded(s, user_id, report)
    plans = plans_by_id(ctx, seen)
    assert len(plans) == 2, plans
    for sql, plan in plans:
        assert "ix_messages_message_id" in plan, (sql, plan)


# --- update_rows / store_raw: driver-level executemany -------------------------------------


def test_row_updates_convert_each_type_and_set_updated_at(either_db: AppContext) -> None:
    ctx = either_db
    actor = make_actor(ctx, "rows@example.com")
    form_letter(ctx, actor, sink_alias(ctx, actor, 2525, "rows", 0), 3)
    with ctx.db.read() as s:
        before = {m.id: m.updated_at for m in s.scalars(select(Message).order_by(Message.id))}
    a, b, c = before
    lease = utcnow() + timedelta(minutes=3)
    results = {"r0@example.org": {"status": "sent", "code": 250, "reply": "2.0.0 ok é"}}
    with ctx.db.write() as s:
        update_rows(s, [
            {"id": a, "status": MessageStatus.SENT, "recipient_results": results,
             "lease_expires_at": lease},
            {"id": b, "status": MessageStatus.FAILED, "recipient_results": None,
             "lease_expires_at": None},
            {"id": c, "attempts": 3},
        ])  # fmt: skip
        store_raw(s, {a: b"Subject: x\r\n\r\nbody\r\n"})
    with ctx.db.read() as s:
        rows = {m.id: m for m in s.scalars(select(Message))}
        raw = s.scalar(select(MessageBody.raw).where(MessageBody.message_id == a))
    assert (rows[a].status, rows[a].recipient_results) == ("sent", results)
    assert rows[a].lease_expires_at == lease
    assert (rows[b].status, rows[b].recipient_results, rows[b].lease_expires_at) == (
        "failed", None, None,
    )  # fmt: skip
    assert (rows[c].status, rows[c].attempts) == ("queued", 3)
    assert all(rows[i].updated_at > before[i] for i in (a, b, c))
    assert raw == b"Subject: x\r\n\r\nbody\r\n"
