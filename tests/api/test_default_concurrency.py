"""Exactly one default alias per user, under concurrent requests, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sendas.api import create_app
from sendas.config import Settings
from sendas.context import AppContext
from tests.api.test_aliases import GOOD
from tests.conftest import make_person


@pytest.fixture(params=["sqlite", "postgres"])
def any_ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppContext]:
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, embedded_worker=False)
    ctx = AppContext.build(settings)
    yield ctx
    ctx.close()


def defaults(client: TestClient, headers: dict[str, str]) -> list[str]:
    rows = client.get("/api/aliases", headers=headers).json()
    return [r["description"] for r in rows if r["is_default"]]


def test_concurrent_creates_and_default_switches_keep_one_default(any_ctx: AppContext):
    person = make_person(any_ctx, "carol@example.com")
    app = create_app(any_ctx.settings, ctx=any_ctx)
    with TestClient(app) as client:

        def create(i: int) -> int:
            r = client.post(
                "/api/aliases",
                json={**GOOD, "description": f"A{i}", "is_default": i % 2 == 0},
                headers=person.headers,
            )
            assert r.status_code == 201, r.text
            return int(r.json()["id"])

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(create, range(16)))
        assert len(defaults(client, person.headers)) == 1

        def make_default(alias_id: int) -> int:
            r = client.patch(
                f"/api/aliases/{alias_id}", json={"is_default": True}, headers=person.headers
            )
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(make_default, ids)) == {200}
        assert len(defaults(client, person.headers)) == 1

        def delete(alias_id: int) -> int:
            return client.delete(f"/api/aliases/{alias_id}", headers=person.headers).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(delete, ids[:12])) == {204}
        remaining = client.get("/api/aliases", headers=person.headers).json()
        assert len(remaining) == 4
        assert len([r for r in remaining if r["is_default"]]) == 1
