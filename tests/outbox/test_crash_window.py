"""A worker killed mid-window at full speed: what never reached the server stays ``queued``
(claimed rows come back after their lease), and only what may have reached it becomes
``unknown``, at most the window (SENDAS_SEND_WINDOW). Counted against what a recording
server received."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import pytest

from sendas.context import AppContext
from sendas.db.models import Message
from tests.conftest import make_actor
from tests.outbox.conftest import SpawnWorker, make_alias, reap, received_ids
from tests.outbox.test_crash import form_letter
from tests.servers.smtpd import SmtpdFactory

MESSAGES = 1500
KILLS = 3
WINDOW = 12
OPTIONS = ("--lease-seconds", "1", "--poll-interval", "0.05")


def states(ctx: AppContext) -> dict[int, tuple[str, str]]:
    with ctx.db.read() as s:
        return {i: (st, mid or "") for i, st, mid in
                s.query(Message.id, Message.status, Message.message_id)}  # fmt: skip


@pytest.mark.timeout(180)
async def test_a_kill_mid_window_leaves_unknown_only_what_may_have_reached_the_server(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
) -> None:
    ctx, env = shared_sqlite
    env = {**env, "SENDAS_SEND_WINDOW": str(WINDOW)}
    actor = make_actor(ctx, "window@example.com")
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, actor, server)
    form_letter(ctx, actor, alias_id, MESSAGES)
    seed = int(os.environ.get("SENDAS_TEST_SEED") or time.time_ns() % 2**32)
    rng = random.Random(seed)
    unknown_before = 0
    per_kill: list[int] = []

    for _ in range(KILLS):
        before = len(server.recorder.messages)
        proc = await sendas_worker(env, *OPTIONS)
        target = before + rng.randint(100, 250)
        deadline = time.monotonic() + 60
        while len(server.recorder.messages) < target:
            assert time.monotonic() < deadline, "the worker sent nothing"
            await asyncio.sleep(rng.uniform(0, 0.005))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await asyncio.sleep(0.2)  # the server finishes reading what was on the wire
        await asyncio.to_thread(reap, ctx)

        final = await asyncio.to_thread(states, ctx)
        got = received_ids(server.recorder)
        by_status: dict[str, list[tuple[int, str]]] = {}
        for message_id, (status, mid) in final.items():
            by_status.setdefault(status, []).append((message_id, mid))
        assert set(by_status) <= {"sent", "unknown", "queued"}, set(by_status)
        assert max(got.values()) == 1  # nothing reached the server twice
        # Every message the server received is sent or unknown, none came back queued.
        fate = {mid: status for status, rows in by_status.items() for _, mid in rows if mid}
        for mid in got:
            assert fate.get(mid) in ("sent", "unknown"), (mid, fate.get(mid))
        # Every sent message reached the server.
        assert all(mid in got for _, mid in by_status.get("sent", []))
        # Only what may have reached the server is unknown: at most the window per kill.
        unknown = len(by_status.get("unknown", [])) - unknown_before
        unknown_before += unknown
        per_kill.append(unknown)
        assert 0 <= unknown <= WINDOW, (unknown, WINDOW)
        # The kill came mid-letter: the rest, claimed or not, is still queued.
        assert by_status.get("queued"), "the letter was finished before the kill"
        assert sum(len(rows) for rows in by_status.values()) == MESSAGES  # nothing lost

    print(f"\nwindow {WINDOW}: unknown per kill {per_kill} (seed {seed})")
