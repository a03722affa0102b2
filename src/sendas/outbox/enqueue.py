"""Put messages into the outbox: one row per submission, committed by the caller. This is
the only place that creates message rows: single messages (composed now) and the
recipients of a form letter (rendered when first sent), in bulk.

The row is the promise: once the caller's transaction commits, the message survives any
crash, and a worker will submit it through its lane.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.orm import Session

from sendas.compose import Composed, Content, Sender, compose, needs_smtputf8
from sendas.db.models import Message, MessageBody, utcnow
from sendas.db.wake import wake_workers
from sendas.outbox.counts import init_counts
from sendas.outbox.lanes import SYSTEM_LANE, alias_lane
from sendas.statuses import MessageStatus

INSERT_CHUNK = 5_000
_FORM_LETTER_COLUMNS = (
    "id", "user_id", "alias_id", "campaign_id", "lane", "kind", "status", "envelope_from",
    "recipients", "to_addrs", "cc_addrs", "bcc_addrs", "subject", "message_id",
    "attempts", "next_attempt_at", "created_at", "updated_at",
)  # fmt: skip


def compose_for(sender: Sender, content: Content) -> Composed:
    """Compose once at enqueue; ``utf8`` when an address needs it (the server is asked later).

    Raises :class:`~sendas.errors.ValidationFailed` naming the bad field.
    """
    addresses = [sender.from_address, *content.to, *content.cc, *content.bcc]
    if sender.reply_to:
        addresses.append(sender.reply_to)
    return compose(sender, content, utf8=needs_smtputf8(addresses))


def enqueue(
    session: Session,
    composed: Composed,
    content: Content,
    *,
    user_id: int | None,
    alias_id: int | None,
    kind: str = "single",
) -> Message:
    """Insert a ``queued`` message for the alias's lane (or the system lane without alias)."""
    wake_workers(session)
    now = utcnow()
    message = Message(
        user_id=user_id,
        alias_id=alias_id,
        lane=alias_lane(alias_id) if alias_id is not None else SYSTEM_LANE,
        kind=kind,
        status=MessageStatus.QUEUED,
        envelope_from=composed.envelope_from,
        recipients=list(composed.recipients),
        to_addrs=list(content.to),
        cc_addrs=list(content.cc),
        bcc_addrs=list(content.bcc),
        subject=content.subject,
        message_id=composed.message_id,
        body=MessageBody(raw=composed.data),
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    session.flush()
    return message


def _sql(conn: Connection, table: str, columns: tuple[str, ...]) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


class _Ids:
    """Message ids for rows inserted in bulk, known before the insert so that each body
    row can name its message without a round trip per row."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sqlite = conn.dialect.name == "sqlite"
        if self.sqlite:
            # The write transaction holds the database's one write lock: nobody else
            # inserts, and the ids after the largest are the ones SQLite would pick.
            self.last = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM messages")
                            .scalar_one())  # fmt: skip

    def take(self, n: int) -> list[int]:
        if self.sqlite:
            first, self.last = self.last + 1, self.last + n
            return list(range(first, self.last + 1))
        return list(self.conn.execute(
            text("SELECT nextval(pg_get_serial_sequence('messages', 'id')) "
                 "FROM generate_series(1, :n)"), {"n": n},
        ).scalars())  # fmt: skip


def enqueue_form_letter(
    session: Session,
    recipients: Iterable[tuple[str, dict[str, Any], str]],
    *,
    campaign_id: int,
    user_id: int,
    alias_id: int,
    from_address: str,
    now: datetime,
) -> int:
    """Insert a ``queued`` message per (email, merge fields, rendered subject) of a form
    letter, its body rendered when first sent, ``INSERT_CHUNK`` at a time; return how many.
    The subject is stored now so that every message of a letter has it, also one never
    sent. ``recipients`` may be a generator: it is read once and never held.

    The rows go to the driver's ``executemany`` as plain tuples with the JSON and timestamps
    already encoded: SQLAlchemy's per-value type processing would cost more than the insert.
    """
    wake_workers(session)
    table = Message.__table__
    assert isinstance(table, Table)
    conn = session.connection()
    dialect = conn.dialect
    messages_sql = _sql(conn, table.name, _FORM_LETTER_COLUMNS)
    bodies_sql = _sql(conn, MessageBody.__tablename__, ("message_id", "merge_fields"))
    to_db = table.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    stamp = to_db(now) if to_db is not None else now
    head = (user_id, alias_id, campaign_id, alias_lane(alias_id), "campaign",
            MessageStatus.QUEUED.value, from_address)  # fmt: skip
    tail = (0, stamp, stamp, stamp)
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    ids = _Ids(conn)
    total = 0

    def insert(chunk: list[tuple[str, str, str]]) -> None:
        # Each row: the recipient as a JSON list, its fields as JSON, the subject.
        taken = ids.take(len(chunk))
        conn.exec_driver_sql(messages_sql, [
            (i, *head, addresses, addresses, "[]", "[]", subject, "", *tail)
            for i, (addresses, _, subject) in zip(taken, chunk, strict=True)
        ])  # fmt: skip
        conn.exec_driver_sql(
            bodies_sql, [(i, fields) for i, (_, fields, _) in zip(taken, chunk, strict=True)]
        )

    chunk: list[tuple[str, str, str]] = []
    for email, fields, subject in recipients:
        chunk.append((encode([email]), encode(fields), subject))
        if len(chunk) >= INSERT_CHUNK:
            insert(chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        insert(chunk)
        total += len(chunk)
    init_counts(session, campaign_id, total, now)
    return total
