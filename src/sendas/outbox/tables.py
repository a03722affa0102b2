"""The Core handles and statements the outbox's hot paths share.

The claim, mark and record paths run for every batch of every lane: they use Core
statements on the tables, built once with parameters, which cost a fraction of the ORM's
statement handling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Dialect, Table, Update, bindparam, select, update
from sqlalchemy.orm import Session

from sendas.db.models import Campaign, Lane, Message, MessageBody, utcnow
from sendas.statuses import CampaignStatus

MSG: Table = Message.metadata.tables[Message.__tablename__]
CAMPAIGN: Table = Campaign.metadata.tables[Campaign.__tablename__]
LANE: Table = Lane.metadata.tables[Lane.__tablename__]
BODY: Table = MessageBody.metadata.tables[MessageBody.__tablename__]
_BY_ID = update(MSG).where(MSG.c.id == bindparam("_id"))  # SET: the other keys
_BY_IDS = update(MSG).where(MSG.c.id.in_(bindparam("ids", expanding=True)))

CHUNK = 500
T = TypeVar("T")


def chunks(items: Sequence[T]) -> list[list[T]]:
    return [list(items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)]


def update_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE messages by ``id``: one executemany per set of columns changed."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    for keys, group in groups.items():
        _update_many(session, _BY_ID, keys, group)


def update_ids(session: Session, ids: Sequence[int], **values: Any) -> None:
    """UPDATE messages SET ``values`` WHERE id IN ``ids`` (500 at a time)."""
    for chunk in chunks(ids):
        session.execute(_BY_IDS, {"ids": chunk, **values})


_BODY_RAW = update(BODY).where(BODY.c.message_id == bindparam("_id"))


def store_raw(session: Session, raw: dict[int, bytes]) -> None:
    """Write rendered form letters' bytes into their bodies (one executemany), the one
    write of ``raw`` a form letter's message gets; the status row stays narrow. Bytes
    already :class:`~sendas.db.packing.Packed` are written as they are."""
    if raw:
        rows = [{"id": i, "raw": data} for i, data in raw.items()]
        _update_many(session, _BODY_RAW, frozenset(("id", "raw")), rows)


def _update_many(
    session: Session, statement: Update, keys: frozenset[str], rows: list[dict[str, Any]]
) -> None:
    """Run ``statement`` (an UPDATE whose WHERE names ``_id``) for ``rows``, each with the
    keys ``keys`` (``id`` for ``_id``), as one executemany."""
    if "updated_at" in statement.table.c and "updated_at" not in keys:
        # What the column's onupdate would set; a driver statement runs no defaults.
        now = utcnow()
        rows = [{**row, "updated_at": now} for row in rows]
        keys = keys | {"updated_at"}
    connection = session.connection()
    plan = _plan(connection.dialect, statement, keys)
    connection.exec_driver_sql(plan.sql, plan.parameters(rows))


@dataclass(frozen=True, slots=True)
class _ManyPlan:
    """An UPDATE compiled once for a dialect and a set of columns, with its parameters'
    order and converters. Through ``Session.execute`` SQLAlchemy builds and converts each
    row's parameters with its general machinery: a third of the CPU of marking a chunk."""

    sql: str
    binds: tuple[str, ...]  # the statement's parameters, in its order
    names: tuple[str, ...]  # the row key of each (``id`` for ``_id``)
    converters: tuple[Callable[[Any], Any] | None, ...]
    positional: bool

    def parameters(self, rows: list[dict[str, Any]]) -> list[Any]:
        converters = [_last_one(c) if c else None for c in self.converters]
        if self.positional:
            pairs = list(zip(self.names, converters, strict=True))
            return [tuple(c(r[n]) if c else r[n] for n, c in pairs) for r in rows]
        triples = list(zip(self.binds, self.names, converters, strict=True))
        return [{b: c(r[n]) if c else r[n] for b, n, c in triples} for r in rows]


def _last_one(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert``, answering again without converting when given the very object it was
    given last: the rows of one write share their times (``now``, a lease's end), and
    formatting a datetime for SQLite costs more than the rest of a row's parameters."""
    last: list[Any] = [_NOTHING, None]

    def run(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, convert(value)
        return last[1]

    return run


_NOTHING = object()


_PLANS: dict[tuple[str, int, frozenset[str]], _ManyPlan] = {}


def _plan(dialect: Dialect, statement: Update, keys: frozenset[str]) -> _ManyPlan:
    key = (dialect.name, id(statement), keys)  # statements here are module constants
    found = _PLANS.get(key)
    if found is not None:
        return found
    columns = sorted(k for k in keys if k != "id")
    compiled = statement.compile(dialect=dialect, column_keys=columns)
    # A private attribute, read once per plan: the converters SQLAlchemy itself applies.
    processors = compiled._bind_processors
    if set(compiled.binds) != {*columns, "_id"}:  # a column default would need a value
        raise ValueError(f"cannot run {sorted(compiled.binds)} as a plain executemany")
    binds = compiled.positiontup if compiled.positional else [*columns, "_id"]
    order = tuple(binds or ())
    names = tuple("id" if b == "_id" else b for b in order)
    converters = tuple(_single(processors.get(b)) for b in order)
    plan = _ManyPlan(compiled.string, order, names, converters, compiled.positional)
    _PLANS[key] = plan
    return plan


def _single(processor: object) -> Callable[[Any], Any] | None:
    if processor is None or callable(processor):
        return processor
    raise TypeError("a tuple parameter in a row update")  # none of these statements has one


def unindexed(column: Any) -> Any:
    """``column`` as an expression no index can answer (``column || ''``, or ``column +
    0`` for a number). A statement that looks messages up by id (or Message-ID) and also
    checks their status must find them by that key: SQLite otherwise plans on
    ``ix_messages_claim`` (status first) and reads every queued message for each
    statement (0.5 ms for 32 ids among 5,000 queued; a second at a million), or on
    ``ix_messages_user_status`` and reads a user's whole history. PostgreSQL plans on
    the key either way."""
    if column.type.python_type is int:
        return column + 0
    return column.concat("")


def running_letters(alias_id: Any) -> Any:
    """The running form letters of an alias (a Core SELECT of their ids; ``alias_id`` a
    value, a parameter or a column of an outer query). A form letter's messages go through
    its alias's lane (``outbox.enqueue``). A seek on ``ix_campaigns_alias_status``: an
    alias's finished letters are not read (by alias alone, a poll read every letter of every
    alias: 22 ms with 100 aliases of 1,000 letters each, where 1.3 ms now)."""
    return (
        select(CAMPAIGN.c.id)
        .where(CAMPAIGN.c.alias_id == alias_id, CAMPAIGN.c.status == CampaignStatus.RUNNING)
        # An outer query's alias, even from inside its EXISTS (not a join of every alias).
        .correlate_except(CAMPAIGN)
    )
