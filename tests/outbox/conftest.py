"""Outbox test helpers: aliases pointing at an in-process aiosmtpd, a worker in the test's
event loop, and what the server received keyed by Message-ID."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from sendas.context import AppContext
from sendas.db.models import Message
from sendas.outbox import OutboxConfig, Worker
from sendas.schemas import AliasCreate, MessageIn
from sendas.services import aliases as alias_service
from sendas.services import messages as message_service
from sendas.services.common import Actor
from tests.servers.smtpd import PASSWORD, USER, Recorder, SmtpdServer

FAST = OutboxConfig(
    lease_seconds=2.0,
    poll_interval=0.02,
    backoff_base=0.05,
    backoff_max=0.2,
    reconnect_base=0.05,
    reconnect_max=0.2,
    smtp_timeout=2.0,
)

_MID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.I | re.M)


def message_id_of(data: bytes) -> str:
    found = _MID.search(data)
    assert found, "the server received a message without Message-ID"
    return found.group(1).decode()


def received_ids(recorder: Recorder) -> Counter[str]:
    """How often each Message-ID reached the end of data (dropped ones included)."""
    return Counter(message_id_of(m.data) for m in recorder.messages)


def make_alias(
    ctx: AppContext,
    actor: Actor,
    server: SmtpdServer,
    *,
    delay_ms: int = 0,
    name: str = "Work",
    from_address: str | None = None,
    **extra: Any,
) -> int:
    data = AliasCreate(
        description=name,
        alias_name=name,
        from_address=from_address or f"{name.lower()}@example.test",
        smtp_server=f"127.0.0.1:{server.port}",
        tls="none",
        allow_plaintext_auth=True,
        smtp_username=USER,
        smtp_password=SecretStr(PASSWORD),
        delay_ms=delay_ms,
        **extra,
    )
    with ctx.db.write() as s:
        alias, _ = alias_service.create_alias(s, actor, data, ctx.secrets)
        return alias.id


def sink_alias(ctx: AppContext, actor: Actor, port: int, name: str, delay_ms: int) -> int:
    """An alias sending to the stamping sink on ``port`` (no sign-in: it offers none)."""
    data = AliasCreate(description=name, alias_name=name, from_address=f"{name}@example.test",
                       smtp_server=f"127.0.0.1:{port}", tls="none", delay_ms=delay_ms)  # fmt: skip
    with ctx.db.write() as s:
        alias, _ = alias_service.create_alias(s, actor, data, ctx.secrets)
        return alias.id


def queue(
    ctx: AppContext,
    actor: Actor,
    alias_id: int,
    count: int,
    *,
    to: list[str] | None = None,
    subject: str = "Hello",
) -> list[int]:
    ids = []
    with ctx.db.write() as s:
        for i in range(count):
            body = MessageIn(
                alias_id=alias_id,
                to=to or [f"r{i}@example.org"],
                subject=f"{subject} {i}",
                text=f"message {i}\n",
            )
            ids.append(message_service.send_message(s, actor, body).id)
    return ids


def statuses(ctx: AppContext, ids: list[int] | None = None) -> dict[int, str]:
    with ctx.db.read() as s:
        q = s.query(Message.id, Message.status)
        if ids is not None:
            q = q.filter(Message.id.in_(ids))
        return {i: st for i, st in q.all()}


def message(ctx: AppContext, message_id: int) -> Message:
    with ctx.db.read() as s:
        return s.get_one(Message, message_id)


async def wait_for(predicate: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    # In a thread: a blocking query must not delay the in-process SMTP server's clock.
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def all_final(ctx: AppContext, ids: list[int]) -> Callable[[], bool]:
    """True once none of ``ids`` is waiting or being sent (a cheap count, polled often)."""
    id_set = list(ids)

    def check() -> bool:
        with ctx.db.read() as s:
            open_count = s.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.status.in_(("queued", "retrying", "sending")))
                .where(Message.id.in_(id_set) if len(id_set) < 500 else Message.id >= min(id_set))
            )
        return open_count == 0

    return check


@asynccontextmanager
async def running_worker(
    ctx: AppContext, config: OutboxConfig = FAST, **kw: Any
) -> AsyncIterator[Worker]:
    worker = Worker(ctx, config, **kw)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 20)


@pytest.fixture
def alice_actor(ctx: AppContext, alice: Any) -> Actor:
    return Actor(alice.id, alice.email, False)
