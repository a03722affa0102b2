"""A GET never writes: every statement it sends to the database is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from sendas.context import AppContext
from sendas.db.models import SystemOutgoing
from tests.conftest import Person

WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")  # and any SELECT ... FOR UPDATE


@contextmanager
def statements(ctx: AppContext) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(" ".join(sql.split()).upper())

    event.listen(ctx.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", record)


def writes(seen: list[str]) -> list[str]:
    return [s for s in seen if s.startswith(WRITES) or s.endswith("FOR UPDATE")]


def stamp_token(client: TestClient, person: Person) -> None:
    """Authenticate once first: a token's ``last_used_at`` is stamped at most once a minute,
    on whichever request comes first. That bookkeeping is the token's, not the GET's."""
    assert client.get("/api/me", headers=person.headers).status_code == 200


def test_get_system_outgoing_on_a_fresh_database_writes_nothing(
    client: TestClient, ctx: AppContext, admin: Person
) -> None:
    stamp_token(client, admin)
    with statements(ctx) as seen:
        r = client.get("/api/system/outgoing", headers=admin.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["configured"] is False and body["smtp_server"] == "" and body["delay_ms"] == 0
    assert any(s.startswith("SELECT") for s in seen)  # the listener saw the request's reads
    assert writes(seen) == []


def test_without_the_row_a_read_gives_the_defaults_and_the_first_put_creates_it(
    client: TestClient, ctx: AppContext, admin: Person
) -> None:
    with ctx.db.write() as s:
        s.query(SystemOutgoing).delete()
    stamp_token(client, admin)
    with statements(ctx) as seen:
        r = client.get("/api/system/outgoing", headers=admin.headers)
    assert r.status_code == 200 and r.json()["configured"] is False
    assert r.json()["tls"] == "auto" and r.json()["smtp_server"] == ""
    assert writes(seen) == []
    with ctx.db.read() as s:
        assert s.get(SystemOutgoing, 1) is None

    r = client.put("/api/system/outgoing", json={"from_name": "CRM"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    with ctx.db.read() as s:
        assert s.get_one(SystemOutgoing, 1).from_name == "CRM"
