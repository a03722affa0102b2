"""The transaction queue tries a write again after a lost connection, within its budget,
and never after any other error."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from sendas.context import AppContext
from sendas.outbox.txqueue import TxQueue


def _lost() -> DBAPIError:
    return DBAPIError("SELECT 1", None, ConnectionResetError("gone"), connection_invalidated=True)


async def _run_with(ctx: AppContext, retry_seconds: float, failures: int) -> list[int]:
    calls: list[int] = []

    def op(session: Session) -> int:
        calls.append(1)
        if len(calls) <= failures:
            raise _lost()
        return int(session.scalar(text("SELECT 41 + 1")) or 0)

    tx = TxQueue(ctx.db, retry_seconds=retry_seconds)
    tx.start()
    try:
        assert await tx.run(op) == 42
    finally:
        await tx.close()
    return calls


async def test_a_write_whose_connection_was_lost_is_run_again(ctx: AppContext) -> None:
    assert len(await _run_with(ctx, 30.0, failures=2)) == 3


async def test_without_a_retry_budget_a_lost_connection_fails_the_write(ctx: AppContext) -> None:
    with pytest.raises(DBAPIError):
        await _run_with(ctx, 0.0, failures=1)


async def test_other_database_errors_are_not_tried_again(ctx: AppContext) -> None:
    calls: list[int] = []

    def op(session: Session) -> None:
        calls.append(1)
        session.execute(text("SELECT * FROM no_such_table"))  # SQLite: an OperationalError

    tx = TxQueue(ctx.db, retry_seconds=30.0)
    tx.start()
    try:
        with pytest.raises(OperationalError):
            await tx.run(op)
    finally:
        await tx.close()
    assert len(calls) == 1
