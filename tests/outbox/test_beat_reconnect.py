"""A PostgreSQL restart during a heartbeat: the beat is tried again on a new connection
(within ``SENDAS_DB_RETRY_SECONDS``), so the worker keeps its leases.

The restart is played as in ``test_db_reconnect``: every connection of the database is
ended (``pg_terminate_backend``) after the beat has checked its connection out."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from sendas.context import AppContext
from sendas.db.models import Lane, utcnow
from sendas.outbox import beat
from sendas.outbox.beat import Heartbeat
from tests.outbox.test_db_reconnect import _disconnecting

pytestmark = pytest.mark.postgres

LEASE = 600.0


def _beat(ctx: AppContext, retry_seconds: float, lost: list[set[str]]) -> Heartbeat:
    return Heartbeat(
        ctx.db, "me", 1.0, LEASE, lambda: (["alias:1"], []), lost.append,
        retry_seconds=retry_seconds,
    )  # fmt: skip


def _expires(ctx: AppContext) -> datetime:
    with ctx.db.read() as s:
        at = s.get_one(Lane, "alias:1").owner_expires_at
        assert at is not None
        return at


def _held_briefly(ctx: AppContext) -> datetime:
    soon = utcnow() + timedelta(seconds=5)
    with ctx.db.write() as s:
        s.add(Lane(name="alias:1", owner="me", owner_expires_at=soon))
    return _expires(ctx)


def test_a_beat_whose_connection_was_lost_renews_the_leases(
    pg_ctx: AppContext,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _held_briefly(pg_ctx)
    calls: list[int] = []
    monkeypatch.setattr(beat, "heartbeat", _disconnecting(postgres_url, beat.heartbeat, calls))
    lost: list[set[str]] = []
    _beat(pg_ctx, 10.0, lost).beat()
    assert len(calls) == 2  # the first renewal was lost with its connection, then made again
    assert _expires(pg_ctx) > before + timedelta(seconds=LEASE / 2)
    assert lost == []


def test_without_a_retry_budget_the_lost_beat_fails(
    pg_ctx: AppContext,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _held_briefly(pg_ctx)
    calls: list[int] = []
    monkeypatch.setattr(beat, "heartbeat", _disconnecting(postgres_url, beat.heartbeat, calls))
    with pytest.raises(OperationalError):
        _beat(pg_ctx, 0.0, []).beat()
    assert len(calls) == 1
    assert _expires(pg_ctx) == before  # not renewed: the next beat (or a takeover) decides
