"""Crash safety: a real ``sendas worker`` process killed with SIGKILL at random points of a
2,000-recipient form letter, restarted, ten times. Every message ends ``sent`` exactly once
at the server, or ``unknown`` (at most once at the server); none is lost, none is sent
twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Message
from sendas.schemas import CampaignTemplatesIn, RecipientIn
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.recipients import json_rows
from sendas.services.common import Actor
from tests.conftest import make_person
from tests.outbox.conftest import make_alias, received_ids
from tests.servers.smtpd import SmtpdFactory

MESSAGES = 2000
KILLS = 10
WORKER = [sys.executable, "-c", "from sendas.cli import main; main()", "worker",
          "--lease-seconds", "1", "--poll-interval", "0.05"]  # fmt: skip


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[AppContext, dict[str, str]]]:
    """A SQLite database and key that a worker subprocess can open too."""
    key = Fernet.generate_key().decode()
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    settings = Settings(data_dir=tmp_path / "data", database_url=url, secret_key=key,
                        embedded_worker=False, smtp_timeout=3.0)  # fmt: skip
    ctx = AppContext.build(settings)
    env = {**os.environ, "SENDAS_DATABASE_URL": url, "SENDAS_SECRET_KEY": key,
           "SENDAS_DATA_DIR": str(tmp_path / "data"), "SENDAS_SMTP_TIMEOUT": "3",
           "SENDAS_LOG_LEVEL": "WARNING"}  # fmt: skip
    yield ctx, env
    ctx.close()


def form_letter(ctx: AppContext, actor: Actor, alias_id: int, count: int) -> int:
    recipients = [RecipientIn(email=f"r{i}@example.org",
                                               fields={"first": f"First{i}"})
                  for i in range(count)]  # fmt: skip
    data = CampaignTemplatesIn(
        alias_id=alias_id, subject="Hello {{ first }}", text="Dear {{ first }},\n\nnews.\n"
    )
    created = create_campaign(ctx.db, actor, data, json_rows(recipients))
    return created.id


async def started(log: Path, within: float = 30.0) -> None:
    """Wait until the worker logged that it runs (a SIGTERM before that would kill it)."""
    deadline = time.monotonic() + within
    while b"outbox worker" not in await asyncio.to_thread(log.read_bytes):
        assert time.monotonic() < deadline, "the worker did not start"
        await asyncio.sleep(0.05)


def outcome(ctx: AppContext) -> dict[str, tuple[str, str]]:
    with ctx.db.read() as s:
        return {str(i): (st, mid) for i, st, mid in
                s.query(Message.id, Message.status, Message.message_id)}  # fmt: skip


@pytest.mark.timeout(120)
async def test_sigkill_at_random_points_never_loses_or_doubles_a_message(
    shared: tuple[AppContext, dict[str, str]], smtpd: SmtpdFactory, tmp_path: Path
) -> None:
    ctx, env = shared
    person = make_person(ctx, "crash@example.com")
    actor = Actor(person.id, person.email, False)
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, actor, server)
    form_letter(ctx, actor, alias_id, MESSAGES)
    seed = int(os.environ.get("SENDAS_TEST_SEED") or time.time_ns() % 2**32)
    print(f"\ncrash run: seed {seed} (replay: SENDAS_TEST_SEED={seed})")
    rng = random.Random(seed)
    began = time.monotonic()

    for _ in range(KILLS):
        before = len(server.recorder.messages)
        proc = await asyncio.create_subprocess_exec(*WORKER, env=env)
        target = before + rng.randint(20, 150)
        deadline = time.monotonic() + 20
        while len(server.recorder.messages) < target and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(rng.uniform(0, 0.01))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    log = tmp_path / "last-worker.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *WORKER, env={**env, "SENDAS_LOG_LEVEL": "INFO"}, stderr=err
        )
    await started(log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = {st for st, _ in (await asyncio.to_thread(outcome, ctx)).values()}
        if states <= {"sent", "unknown", "failed"}:
            break
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    elapsed = time.monotonic() - began

    final = outcome(ctx)
    counts = received_ids(server.recorder)
    assert len(final) == MESSAGES
    by_status: dict[str, int] = {}
    for status, message_id in final.values():
        by_status[status] = by_status.get(status, 0) + 1
        if status == "sent":
            assert counts[message_id] == 1, (message_id, counts[message_id])
        else:
            assert status == "unknown", status
            assert counts[message_id] <= 1
    assert max(counts.values()) == 1  # nothing reached the server twice
    assert sum(counts.values()) >= by_status["sent"]
    connections = server.recorder.connections
    print(f"\ncrash run (seed {seed}): {by_status} in {elapsed:.1f} s, {connections} connections")
