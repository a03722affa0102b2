"""Over a slow link without CHUNKING a connection carries one message per round trip: the
window holds marked ``sending`` only what the link takes in ``AHEAD_SECONDS``, so a worker
killed there leaves that few ``unknown`` (not the whole window, of which one message was on
the wire). Counted against what a recording server behind a 20 ms round trip received."""

from __future__ import annotations

import asyncio
import math
import signal
import time

import pytest

from sendas.context import AppContext
from sendas.db.models import Message
from sendas.outbox.window import AHEAD_SECONDS
from tests.conftest import make_actor
from tests.outbox.conftest import SpawnWorker, make_alias, reap, received_ids
from tests.outbox.test_crash import form_letter
from tests.servers.delay_proxy import delayed
from tests.servers.smtpd import SmtpdFactory

ONE_WAY = 0.010  # a round trip of at least 20 ms: at most one message per 20 ms
MESSAGES = 400
KILLS = 2
SENT_BEFORE_KILL = 120  # past the first claims, marked before the link's speed was known
OPTIONS = ("--lease-seconds", "1", "--poll-interval", "0.05")


def states(ctx: AppContext) -> dict[str, list[str]]:
    """Message-IDs by status."""
    with ctx.db.read() as s:
        out: dict[str, list[str]] = {}
        for status, mid in s.query(Message.status, Message.message_id):
            out.setdefault(status, []).append(mid or "")
        return out


@pytest.mark.timeout(180)
async def test_a_kill_over_a_slow_link_leaves_unknown_only_what_the_link_takes_meanwhile(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
) -> None:
    ctx, env = shared_sqlite
    window = 64
    env = {**env, "SENDAS_SEND_WINDOW": str(window)}
    # Every outcome comes at least a round trip after the one before (PIPELINING without
    # CHUNKING), so the link's measured speed gives at most this many marked ahead.
    bound = math.ceil(AHEAD_SECONDS / (2 * ONE_WAY))
    assert bound < window
    actor = make_actor(ctx, "slowlink@example.com")
    server = await smtpd("none", pipelining=True)
    async with delayed(server.port, ONE_WAY) as port:
        server.port = port  # the alias reaches the server through the slow link
        alias_id = make_alias(ctx, actor, server)
        form_letter(ctx, actor, alias_id, MESSAGES)
        unknown_before = 0
        per_kill: list[int] = []
        for _ in range(KILLS):
            before = len(server.recorder.messages)
            proc = await sendas_worker(env, *OPTIONS)
            deadline = time.monotonic() + 90
            while len(server.recorder.messages) < before + SENT_BEFORE_KILL:
                assert time.monotonic() < deadline, "the worker sent too little"
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await asyncio.sleep(0.2)  # what was on the wire reaches the server
            await asyncio.to_thread(reap, ctx)

            by_status = await asyncio.to_thread(states, ctx)
            got = received_ids(server.recorder)
            assert set(by_status) <= {"sent", "unknown", "queued"}, set(by_status)
            assert all(mid in got for mid in by_status.get("sent", []))
            unknown = len(by_status.get("unknown", [])) - unknown_before
            unknown_before += unknown
            per_kill.append(unknown)
            assert unknown <= bound, (unknown, bound, per_kill)
            assert by_status.get("queued"), "the letter was finished before the kill"
            assert sum(len(v) for v in by_status.values()) == MESSAGES  # nothing lost
    print(f"\n20 ms round trip, window {window}: unknown per kill {per_kill} (<= {bound})")
