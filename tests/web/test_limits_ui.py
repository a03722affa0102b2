"""The limits as the pages show them: Test Connection past the per-user limit, a message
past the limit on waiting mail, attachments over the total (checked while they are read)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.datastructures import FormData, Headers, UploadFile

from sendas.api import create_app
from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Message
from sendas.errors import ValidationFailed
from sendas.web.routes.messages import READ_CHUNK, _attachments
from tests.conftest import Person
from tests.web.test_pages import csrf_of


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        embedded_worker=False,
        smtp_timeout=3.0,
        tests_per_minute=2,
        max_queued_messages=1,
        max_attachment_bytes=10_000,
    )


@pytest.fixture
def web(ctx: AppContext, admin: Person, alice: Person) -> Iterator[tuple[TestClient, str, int]]:
    """Alice signed in (client, CSRF token) with one alias."""
    with TestClient(create_app(ctx.settings, ctx=ctx), follow_redirects=False) as client:
        r = client.post(
            "/api/aliases",
            json={
                "description": "Main",
                "alias_name": "Alice",
                "from_address": alice.email,
                "smtp_server": "127.0.0.1:9",
                "tls": "none",
                "smtp_username": alice.email,
                "smtp_password": "pw",
            },
            headers=alice.headers,
        )
        alias_id = r.json()["id"]
        token = csrf_of(client.get("/login").text)
        r = client.post(
            "/login",
            data={"csrf": token, "email": alice.email, "password": "correct horse battery"},
        )
        assert r.status_code == 303
        yield client, csrf_of(client.get("/aliases").text), alias_id


def test_test_connection_page_says_when_the_limit_is_reached(
    web: tuple[TestClient, str, int],
) -> None:
    client, token, alias_id = web
    htmx = {"HX-Request": "true", "X-CSRF-Token": token}
    form = {"alias_id": str(alias_id), "smtp_server": "127.0.0.1:9", "tls": "none"}
    for _ in range(2):
        r = client.post("/aliases/test", data=form, headers=htmx)
        assert r.status_code == 200 and "Not tested" not in r.text
    r = client.post("/aliases/test", data=form, headers=htmx)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "Not tested:" in r.text and "SENDAS_TESTS_PER_MINUTE" in r.text
    # The saved alias's card button counts too, and says so in the flash.
    r = client.post(f"/aliases/{alias_id}/test-saved", data={"csrf": token})
    assert r.status_code == 303
    assert "SENDAS_TESTS_PER_MINUTE" in client.get("/aliases").text


def test_compose_past_the_waiting_limit_says_so(
    web: tuple[TestClient, str, int], ctx: AppContext
) -> None:
    client, token, alias_id = web
    form = {"csrf": token, "alias_id": str(alias_id), "to": "bob@example.com", "text": "hi"}
    assert client.post("/compose", data=form).status_code == 303
    r = client.post("/compose", data=form)
    assert r.status_code == 429 and r.headers["Retry-After"]
    assert "SENDAS_MAX_QUEUED_MESSAGES" in r.text
    with ctx.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 1


def test_compose_attachments_over_the_total_name_the_field(
    web: tuple[TestClient, str, int], ctx: AppContext
) -> None:
    client, token, alias_id = web
    form = {"csrf": token, "alias_id": str(alias_id), "to": "bob@example.com", "text": "hi"}
    files = [
        ("attachments", ("one.bin", b"a" * 6_000, "application/octet-stream")),
        ("attachments", ("two.bin", b"b" * 6_000, "application/octet-stream")),
    ]
    r = client.post("/compose", data=form, files=files, headers={"HX-Request": "true"})
    assert r.status_code == 422
    assert 'id="err-attachments"' in r.text and "SENDAS_MAX_ATTACHMENT_BYTES" in r.text
    assert "two.bin" in r.text  # the file where the total went past the limit
    assert "more than 9.8 KB" in r.text  # SENDAS_MAX_ATTACHMENT_BYTES=10000, as on the page
    assert "Up to 9.8 KB in total." in client.get("/compose").text
    with ctx.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 0
    r = client.post("/compose", data=form, files=files[:1])
    assert r.status_code == 303


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.given = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.given += len(chunk)
        return chunk


def test_attachments_stop_at_the_first_chunk_past_the_total() -> None:
    big = CountingFile(b"z" * (50 * READ_CHUNK))
    upload = UploadFile(big, filename="big.bin", headers=Headers({"content-type": "x/y"}))
    with pytest.raises(ValidationFailed) as caught:
        asyncio.run(_attachments(FormData([("attachments", upload)]), 10_000))
    assert caught.value.problems[0].loc == ("body", "attachments")
    assert big.given <= READ_CHUNK
