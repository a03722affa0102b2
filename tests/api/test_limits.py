"""Limits on volume: per-user rate limits (tests, messages), request body caps checked before
parsing, and 401 before an unauthenticated body is read.

Requests go through the app over HTTP (httpx's ASGI transport pulls a streamed body one
chunk at a time, when the app asks), so a test can see how much of a body was read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from sendas.api import create_app
from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Campaign, Message
from sendas.services.campaigns import create
from tests.conftest import Person

CHUNK = 16 * 1024
# A test of unsaved settings: the port is closed, and the password a guess.
UNSAVED = {
    "from_address": "alice@example.com",
    "smtp_server": "127.0.0.1:9",
    "tls": "none",
    "smtp_username": "alice@example.com",
    "smtp_password": "guess",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        embedded_worker=False,
        smtp_timeout=3.0,
        tests_per_minute=3,
        messages_per_hour=0,
        max_queued_messages=0,
        max_request_bytes=8 * 1024,
        max_upload_request_bytes=64 * 1024,
        max_login_request_bytes=2 * 1024,
        max_attachment_bytes=10_000,
    )


@pytest_asyncio.fixture
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx.settings, ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://sendas.test") as c:
        yield c


class Pulled:
    """A streamed request body that records how many bytes the server pulled."""

    def __init__(self, total: int, chunk: bytes = b"x" * CHUNK) -> None:
        self.total = total
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += len(self.chunk)
            yield self.chunk


async def new_alias(api: httpx.AsyncClient, who: Person) -> int:
    body = {
        "description": "Main",
        "alias_name": "Alice",
        "from_address": who.email,
        "smtp_server": "127.0.0.1:2525",
        "tls": "none",
        "smtp_username": who.email,
        "smtp_password": "pw",
    }
    r = await api.post("/api/aliases", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    alias_id: int = r.json()["id"]
    return alias_id


def message(alias_id: int, **over: Any) -> dict[str, Any]:
    return {"alias_id": alias_id, "to": ["bob@example.com"], "subject": "Hi", "text": "x"} | over


def letter(alias_id: int, n: int) -> dict[str, Any]:
    recipients = [{"email": f"r{i}@example.com", "fields": {}} for i in range(n)]
    return {"alias_id": alias_id, "subject": "Hello", "text": "Hi", "recipients": recipients}


def rows(ctx: AppContext, model: type[Message] | type[Campaign]) -> int:
    with ctx.db.read() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


# --- Test Connection ------------------------------------------------------------------------


async def test_tests_are_limited_per_user_on_every_test_endpoint(
    api: httpx.AsyncClient, alice: Person, bob: Person, admin: Person
) -> None:
    alias_id = await new_alias(api, alice)
    unsaved = UNSAVED
    for _ in range(3):
        r = await api.post("/api/aliases/test", json=unsaved, headers=alice.headers)
        assert r.status_code == 200, r.text
    r = await api.post("/api/aliases/test", json=unsaved, headers=alice.headers)
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert "SENDAS_TESTS_PER_MINUTE" in r.json()["detail"]
    assert r.json()["setting"] == "SENDAS_TESTS_PER_MINUTE"
    # One count for all of alice's tests, whichever endpoint; even a malformed body.
    for path in (f"/api/aliases/{alias_id}/test", "/api/imap-accounts/1/test"):
        r = await api.post(path, headers=alice.headers)
        assert r.status_code == 429, (path, r.text)
    r = await api.post("/api/aliases/test", content=b"{not json", headers=alice.headers)
    assert r.status_code == 429
    # Bob and the admin have their own counts.
    r = await api.post("/api/aliases/test", json=unsaved, headers=bob.headers)
    assert r.status_code == 200
    r = await api.post("/api/system/outgoing/test", headers=admin.headers)
    assert r.status_code == 200


def test_the_count_is_shared_by_every_process_on_the_database(
    ctx: AppContext, settings: Settings, alice: Person
) -> None:
    """Two apps, as two `sendas serve` workers would be, each with its own database engine."""
    from fastapi.testclient import TestClient

    other = AppContext.build(settings)
    try:
        with (
            TestClient(create_app(settings, ctx=ctx)) as one,
            TestClient(create_app(settings, ctx=other)) as two,
        ):
            body = UNSAVED
            codes = [
                c.post("/api/aliases/test", json=body, headers=alice.headers).status_code
                for c in (one, two, one, two)
            ]
    finally:
        other.close()
    assert codes == [200, 200, 200, 429]


# --- messages -------------------------------------------------------------------------------


async def test_messages_per_hour(api: httpx.AsyncClient, ctx: AppContext, alice: Person) -> None:
    ctx.settings.messages_per_hour = 3
    alias_id = await new_alias(api, alice)
    for _ in range(3):
        r = await api.post("/api/messages", json=message(alias_id), headers=alice.headers)
        assert r.status_code == 202, r.text
    r = await api.post("/api/messages", json=message(alias_id), headers=alice.headers)
    assert r.status_code == 429
    assert r.json()["setting"] == "SENDAS_MESSAGES_PER_HOUR"
    assert "3 per hour" in r.json()["detail"]
    # The oldest of the hour leaves the window in about an hour.
    assert 3000 < int(r.headers["Retry-After"]) <= 3600
    # Delivered or not, they were queued within the hour: still counted.
    with ctx.db.write() as s:
        s.execute(update(Message).values(status="sent"))
    r = await api.post("/api/messages", json=message(alias_id), headers=alice.headers)
    assert r.status_code == 429
    assert rows(ctx, Message) == 3


async def test_messages_waiting_at_once(
    api: httpx.AsyncClient, ctx: AppContext, alice: Person, bob: Person
) -> None:
    ctx.settings.max_queued_messages = 2
    alias_id = await new_alias(api, alice)
    for _ in range(2):
        r = await api.post("/api/messages", json=message(alias_id), headers=alice.headers)
        assert r.status_code == 202
    r = await api.post("/api/messages", json=message(alias_id), headers=alice.headers)
    assert r.status_code == 429 and r.json()["setting"] == "SENDAS_MAX_QUEUED_MESSAGES"
    assert int(r.headers["Retry-After"]) > 0
    bob_alias = await new_alias(api, bob)
    r = await api.post("/api/messages", json=message(bob_alias), headers=bob.headers)
    assert r.status_code == 202  # bob's own count
    with ctx.db.write() as s:
        s.execute(update(Message).where(Message.user_id == alice.id).values(status="sent"))
    r = await api.post("/api/messages", json=message(alias_id), headers=alice.headers)
    assert r.status_code == 202


async def test_a_form_letter_over_a_limit_is_refused_whole(
    api: httpx.AsyncClient, ctx: AppContext, alice: Person
) -> None:
    ctx.settings.max_queued_messages = 4
    alias_id = await new_alias(api, alice)
    for _ in range(2):
        r = await api.post("/api/messages", json=message(alias_id), headers=alice.headers)
        assert r.status_code == 202
    # 2 waiting + 3 would pass 4: nothing of it is queued.
    r = await api.post("/api/campaigns", json=letter(alias_id, 3), headers=alice.headers)
    assert r.status_code == 429, r.text
    assert r.json()["setting"] == "SENDAS_MAX_QUEUED_MESSAGES"
    assert (rows(ctx, Message), rows(ctx, Campaign)) == (2, 0)
    # Larger than the limit itself: waiting cannot help, 422 on the recipients.
    r = await api.post("/api/campaigns", json=letter(alias_id, 5), headers=alice.headers)
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "recipients"]
    assert "SENDAS_MAX_QUEUED_MESSAGES" in problem["msg"]
    assert (rows(ctx, Message), rows(ctx, Campaign)) == (2, 0)
    r = await api.post("/api/campaigns", json=letter(alias_id, 2), headers=alice.headers)
    assert r.status_code == 202
    assert (rows(ctx, Message), rows(ctx, Campaign)) == (4, 1)


async def test_a_csv_letter_over_the_hourly_limit_is_refused_whole(
    api: httpx.AsyncClient, ctx: AppContext, alice: Person
) -> None:
    ctx.settings.messages_per_hour = 3
    alias_id = await new_alias(api, alice)
    csv = "email\n" + "".join(f"r{i}@example.com\n" for i in range(4))
    r = await api.post(
        "/api/campaigns",
        data={"alias_id": str(alias_id), "subject": "Hi", "text": "Hello"},
        files={"file": ("list.csv", csv.encode(), "text/csv")},
        headers=alice.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert "SENDAS_MESSAGES_PER_HOUR" in r.json()["detail"][0]["msg"]
    assert rows(ctx, Message) == 0


async def test_a_list_over_the_limit_is_refused_before_it_is_rendered(
    api: httpx.AsyncClient, ctx: AppContext, alice: Person
) -> None:
    """Row 4 passes the hourly limit of 3: the answer names the limit, not the rows whose
    template fails (n = 0, "boom"), because the list is measured as it is read, before it is
    rendered."""
    ctx.settings.messages_per_hour = 3
    alias_id = await new_alias(api, alice)
    csv = "email,n\n" + "".join(f"r{i}@example.com,{i}\n" for i in range(5)) + "r5@x.com,boom\n"
    r = await api.post(
        "/api/campaigns",
        data={"alias_id": str(alias_id), "subject": "Hi", "text": "{{ 10 // (n|int) }}"},
        files={"file": ("list.csv", csv.encode(), "text/csv")},
        headers=alice.headers,
    )
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert "SENDAS_MESSAGES_PER_HOUR" in problem["msg"]
    assert rows(ctx, Message) == 0


@pytest.mark.parametrize("held", [True, False])
async def test_a_letter_at_the_limit_with_suppressed_extras_is_queued(
    api: httpx.AsyncClient,
    ctx: AppContext,
    alice: Person,
    monkeypatch: pytest.MonkeyPatch,
    held: bool,
) -> None:
    """Suppressed rows are skipped, not queued: the size check counts what will be queued,
    whether the owner's list is held in memory or looked up per chunk."""
    if not held:
        monkeypatch.setattr(create, "SUPPRESSIONS_HELD", 1)
    ctx.settings.max_queued_messages = 3
    alias_id = await new_alias(api, alice)
    for address in ("r3@example.com", "R4@example.com"):
        r = await api.post("/api/suppressions", json={"address": address}, headers=alice.headers)
        assert r.status_code == 201, r.text
    # Six rows, two suppressed: four to queue is past the limit, refused, nothing queued.
    r = await api.post("/api/campaigns", json=letter(alias_id, 6), headers=alice.headers)
    assert r.status_code == 422, r.text
    assert "SENDAS_MAX_QUEUED_MESSAGES" in r.json()["detail"][0]["msg"]
    assert (rows(ctx, Message), rows(ctx, Campaign)) == (0, 0)
    # Five rows, two suppressed: three to queue, at the limit.
    r = await api.post("/api/campaigns", json=letter(alias_id, 5), headers=alice.headers)
    assert r.status_code == 202, r.text
    assert (r.json()["total"], r.json()["skipped_suppressed"]) == (3, 2)
    assert (rows(ctx, Message), rows(ctx, Campaign)) == (3, 1)


async def test_attachment_total_names_the_field_and_setting(
    api: httpx.AsyncClient, ctx: AppContext, alice: Person
) -> None:
    import base64

    alias_id = await new_alias(api, alice)
    half = base64.b64encode(b"a" * 6_000).decode()
    attachments = [{"filename": f"{n}.bin", "content_base64": half} for n in ("one", "two")]
    r = await api.post(
        "/api/messages", json=message(alias_id, attachments=attachments), headers=alice.headers
    )
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "attachments"]
    assert "SENDAS_MAX_ATTACHMENT_BYTES" in problem["msg"]
    r = await api.post(
        "/api/messages", json=message(alias_id, attachments=attachments[:1]), headers=alice.headers
    )
    assert r.status_code == 202
    assert rows(ctx, Message) == 1


# --- request bodies -------------------------------------------------------------------------


async def test_content_length_over_the_cap_is_413_unread(
    api: httpx.AsyncClient, alice: Person
) -> None:
    body = Pulled(64 * 1024)
    r = await api.post(
        "/api/aliases",
        content=body,
        headers={
            **alice.headers,
            "Content-Length": str(body.total),
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 413
    assert r.json()["setting"] == "SENDAS_MAX_REQUEST_BYTES"
    assert "larger than 8 KB (SENDAS_MAX_REQUEST_BYTES)" in r.json()["detail"]
    assert body.pulled == 0


async def test_chunked_body_is_counted_and_cut_at_the_cap(
    api: httpx.AsyncClient, alice: Person
) -> None:
    body = Pulled(10 * 1024 * 1024)
    r = await api.post(
        "/api/aliases",
        content=body,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["setting"] == "SENDAS_MAX_REQUEST_BYTES"
    # Stopped at the first chunk past 8 KB.
    assert body.pulled <= 8 * 1024 + CHUNK


async def test_upload_routes_have_the_larger_cap(
    api: httpx.AsyncClient, ctx: AppContext, alice: Person
) -> None:
    alias_id = await new_alias(api, alice)
    # 20 KB of text: over the general 8 KB cap, under the upload cap of 64 KB.
    r = await api.post(
        "/api/messages", json=message(alias_id, text="y" * 20_000), headers=alice.headers
    )
    assert r.status_code == 202, r.text
    body = Pulled(1024 * 1024)
    r = await api.post(
        "/api/messages",
        content=body,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["setting"] == "SENDAS_MAX_UPLOAD_REQUEST_BYTES"
    assert body.pulled <= 64 * 1024 + CHUNK


@pytest.mark.parametrize("path", ["/api/messages", "/api/aliases", "/api/campaigns"])
async def test_no_token_is_401_before_the_body_is_read(api: httpx.AsyncClient, path: str) -> None:
    r = await api.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
    body = Pulled(50 * 1024 * 1024)
    r = await api.post(
        path,
        content=body,
        headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"},
    )
    assert r.status_code == 401
    assert body.pulled == 0


async def test_login_form_is_bounded_small(api: httpx.AsyncClient, admin: Person) -> None:
    body = Pulled(100 * 1024 * 1024)
    r = await api.post(
        "/login",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 413
    assert "SENDAS_MAX_LOGIN_REQUEST_BYTES" in r.text
    assert body.pulled <= 2 * 1024 + CHUNK
    big = {"email": "a@example.com", "password": "p" * 4096, "csrf": "x"}
    r = await api.post("/login", data=big)
    assert r.status_code == 413
    # A normal log-in form still passes the cap (and then the CSRF check).
    r = await api.post("/login", data={"email": "a@example.com", "password": "p", "csrf": "x"})
    assert r.status_code == 403


async def test_unsigned_page_posts_redirect_before_the_form_is_read(
    api: httpx.AsyncClient, admin: Person
) -> None:
    body = Pulled(30 * 1024)
    r = await api.post(
        "/compose", content=body, headers={"Content-Type": "multipart/form-data; boundary=xyz"}
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert body.pulled == 0
