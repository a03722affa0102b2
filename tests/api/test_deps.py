"""Token authentication stamps ``last_used_at``, at most once a minute per token."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from sendas.context import AppContext
from sendas.db.models import ApiToken, utcnow
from sendas.services import users as user_service
from tests.conftest import Person


def last_used(ctx: AppContext, who: Person) -> datetime | None:
    with ctx.db.read() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.user_id == who.id))
        assert row is not None
        return row.last_used_at


def test_a_request_with_a_token_stamps_last_used_at(
    client: TestClient, ctx: AppContext, alice: Person, bob: Person
):
    assert last_used(ctx, alice) is None
    before = utcnow()
    assert client.get("/api/me", headers=alice.headers).status_code == 200
    stamp = last_used(ctx, alice)
    assert stamp is not None and before <= stamp <= utcnow()
    assert last_used(ctx, bob) is None  # only the token that was used


def test_a_burst_writes_once_and_a_minute_later_again(
    client: TestClient, ctx: AppContext, alice: Person
):
    client.get("/api/me", headers=alice.headers)
    first = last_used(ctx, alice)
    for _ in range(5):
        assert client.get("/api/aliases", headers=alice.headers).status_code == 200
    assert last_used(ctx, alice) == first
    old = utcnow() - timedelta(minutes=1, seconds=1)
    with ctx.db.write() as s:
        s.execute(update(ApiToken).where(ApiToken.user_id == alice.id).values(last_used_at=old))
    client.get("/api/me", headers=alice.headers)
    stamp = last_used(ctx, alice)
    assert stamp is not None and stamp > old + timedelta(minutes=1)


def test_a_wrong_token_stamps_nothing(client: TestClient, ctx: AppContext, alice: Person):
    r = client.get("/api/me", headers={"Authorization": f"Bearer {alice.token}x"})
    assert r.status_code == 401
    assert last_used(ctx, alice) is None


def test_touch_token_writes_only_when_due(ctx: AppContext, alice: Person):
    now = utcnow()
    with ctx.db.write() as s:
        row = user_service.token_row(s, alice.token)
        assert user_service.touch_due(row, now)
        assert user_service.touch_token(s, row.id, now) is True
        # Two requests that both saw a stale stamp: the second writes nothing.
        assert user_service.touch_token(s, row.id, now + timedelta(seconds=59)) is False
        assert user_service.touch_token(s, row.id, now + timedelta(seconds=60)) is True
    assert last_used(ctx, alice) == now + timedelta(seconds=60)
