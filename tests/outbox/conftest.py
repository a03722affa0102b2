"""Outbox test helpers: aliases pointing at an in-process aiosmtpd, a worker in the test's
event loop or ``sendas worker`` processes that die with their test, and what the server
received keyed by Message-ID."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Message, utcnow
from sendas.outbox import OutboxConfig, Worker
from sendas.outbox.record import reap_expired
from sendas.schemas import AliasCreate, MessageIn
from sendas.services import aliases as alias_service
from sendas.services import messages as message_service
from sendas.services.common import Actor
from tests.servers.process import child_options, stop_group_async
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
    smtp_username: str = USER,
    **extra: Any,
) -> int:
    data = AliasCreate(
        description=name,
        alias_name=name,
        from_address=from_address or f"{name.lower()}@example.test",
        smtp_server=f"127.0.0.1:{server.port}",
        tls="none",
        allow_plaintext_auth=True,
        smtp_username=smtp_username,
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
        return s.get_one(Message, message_id, options=[selectinload(Message.body)])


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


# --- ``sendas worker`` processes ------------------------------------------------------------

WORKER = [sys.executable, "-c", "from sendas.cli import main; main()", "worker"]

SpawnWorker = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def sendas_worker() -> AsyncIterator[SpawnWorker]:
    """Factory: ``await sendas_worker(env, *options, stderr=...)`` starts ``sendas worker``.
    Every worker started dies with the test: its process group is stopped at teardown
    (SIGTERM, then SIGKILL), and it gets SIGKILL if the test process dies first."""
    started: list[asyncio.subprocess.Process] = []

    async def spawn(env: dict[str, str], *options: str, **kw: Any) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *WORKER, *options, env=env, **child_options(), **kw
        )
        started.append(proc)
        return proc

    try:
        yield spawn
    finally:
        for proc in started:
            await stop_group_async(proc)


@pytest.fixture
def pg_ctx(postgres_url: str, tmp_path: Path) -> Iterator[AppContext]:
    """An application on the test PostgreSQL server (its own database)."""
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url,
                        secret_key=Fernet.generate_key().decode(), embedded_worker=False,
                        smtp_timeout=3.0)  # fmt: skip
    ctx = AppContext.build(settings)
    yield ctx
    ctx.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def either_db(request: pytest.FixtureRequest) -> AppContext:
    """An application on SQLite, then on PostgreSQL (``pg_ctx``)."""
    app: AppContext = request.getfixturevalue("ctx" if request.param == "sqlite" else "pg_ctx")
    return app


def _for_workers(
    url: str, tmp_path: Path, log_level: str, **env: str
) -> Iterator[tuple[AppContext, dict[str, str]]]:
    """An application on ``url`` with a key that ``sendas worker`` processes open too: the
    context, and the environment for the workers."""
    key = Fernet.generate_key().decode()
    settings = Settings(data_dir=tmp_path / "data", database_url=url, secret_key=key,
                        embedded_worker=False, smtp_timeout=3.0)  # fmt: skip
    ctx = AppContext.build(settings)
    yield ctx, {**os.environ, "SENDAS_DATABASE_URL": url, "SENDAS_SECRET_KEY": key,
                "SENDAS_DATA_DIR": str(tmp_path / "data"), "SENDAS_LOG_LEVEL": log_level,
                **env}  # fmt: skip
    ctx.close()


@pytest.fixture
def shared_sqlite(tmp_path: Path) -> Iterator[tuple[AppContext, dict[str, str]]]:
    """A SQLite outbox that ``sendas worker`` processes open too, and their environment."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    yield from _for_workers(url, tmp_path, "WARNING", SENDAS_SMTP_TIMEOUT="3")


@pytest.fixture
def pg_shared(postgres_url: str, tmp_path: Path) -> Iterator[tuple[AppContext, dict[str, str]]]:
    """The same on the test PostgreSQL server; the workers log at INFO (each paced
    submission's start: logger ``sendas.outbox.starts``)."""
    yield from _for_workers(postgres_url, tmp_path, "INFO")


async def worker_started(log: Path, within: float = 30.0) -> None:
    """Wait until the worker logged that it runs (a SIGTERM before that would kill it)."""
    deadline = time.monotonic() + within
    while b"outbox worker" not in await asyncio.to_thread(log.read_bytes):
        assert time.monotonic() < deadline, "the worker did not start"
        await asyncio.sleep(0.05)


async def spawn_workers(
    sendas_worker: SpawnWorker, env: dict[str, str], logs: list[Path]
) -> list[asyncio.subprocess.Process]:
    """``sendas worker`` processes, one per log file (their stderr), once each has started."""
    procs = []
    for path in logs:
        with path.open("wb") as err:
            procs.append(await sendas_worker(env, "--poll-interval", "0.05", stderr=err))
    for path in logs:
        await worker_started(path)
    return procs


async def stop_workers(procs: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM to those still running (a clean stop), and wait for all."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    await asyncio.gather(*(asyncio.wait_for(p.wait(), 30) for p in procs))


def reap(ctx: AppContext) -> int:
    """What a live worker does once a dead one's leases ran out (here: at once)."""
    with ctx.db.write() as s:
        return reap_expired(s, utcnow() + timedelta(seconds=30))
