"""Crash safety: a real ``sendas worker`` process killed with SIGKILL at random points of a
2,000-recipient form letter, restarted, ten times. Every message ends ``sent`` exactly once
at the server, or ``unknown`` (at most once at the server); none is lost, none is sent
twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import pytest

from sendas.context import AppContext
from sendas.db.models import Message
from sendas.schemas import CampaignTemplatesIn, RecipientIn
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.recipients import json_rows
from sendas.services.common import Actor
from tests.conftest import make_actor
from tests.outbox.conftest import SpawnWorker, make_alias, received_ids, worker_started
from tests.servers.smtpd import SmtpdFactory

MESSAGES = 2000
KILLS = 10
OPTIONS = ("--lease-seconds", "1", "--poll-interval", "0.05")


def form_letter(ctx: AppContext, actor: Actor, alias_id: int, count: int) -> int:
    recipients = [RecipientIn(email=f"r{i}@example.org",
                                               fields={"first": f"First{i}"})
                  for i in range(count)]  # fmt: skip
    data = CampaignTemplatesIn(
        alias_id=alias_id, subject="Hello {{ first }}", text="Dear {{ first }},\n\nnews.\n"
    )
    created = create_campaign(ctx.db, actor, data, json_rows(recipients))
    return created.id


def outcome(ctx: AppContext) -> dict[str, tuple[str, str]]:
    with ctx.db.read() as s:
        return {str(i): (st, mid) for i, st, mid in
                s.query(Message.id, Message.status, Message.message_id)}  # fmt: skip


@pytest.mark.timeout(120)
async def test_sigkill_at_random_points_never_loses_or_doubles_a_message(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = shared_sqlite
    actor = make_actor(ctx, "crash@example.com")
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, actor, server)
    form_letter(ctx, actor, alias_id, MESSAGES)
    seed = int(os.environ.get("SENDAS_TEST_SEED") or time.time_ns() % 2**32)
    print(f"\ncrash run: seed {seed} (replay: SENDAS_TEST_SEED={seed})")
    rng = random.Random(seed)
    began = time.monotonic()

    for _ in range(KILLS):
        before = len(server.recorder.messages)
        proc = await sendas_worker(env, *OPTIONS)
        target = before + rng.randint(20, 150)
        deadline = time.monotonic() + 20
        while len(server.recorder.messages) < target and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(rng.uniform(0, 0.01))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    log = tmp_path / "last-worker.log"
    with log.open("wb") as err:
        proc = await sendas_worker({**env, "SENDAS_LOG_LEVEL": "INFO"}, *OPTIONS, stderr=err)
    await worker_started(log)
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
