"""``sendas worker`` processes share the lanes: with two live workers and four aliases with
mail, each drives two; alone, one drives all four; a killed worker's lanes go to the other
after the takeover time. Every message reaches the server once (counted there).

The aliases are paced (``delay_ms``), so that each lane is driven for a while whatever the
machine's speed; the mail is released at once (its lanes held, then let go in one
transaction) after every worker announced itself. Assertions are on what the lanes table,
the server and the workers' logs show, never on durations.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sendas.context import AppContext
from sendas.db.models import Lane, LiveWorker, utcnow
from sendas.outbox.lanes import alias_lane, hold_lanes, release_held
from tests.conftest import make_actor
from tests.outbox.conftest import (
    SpawnWorker,
    all_final,
    make_alias,
    queue,
    received_ids,
    spawn_workers,
    statuses,
    stop_workers,
    wait_for,
)
from tests.servers.smtpd import SmtpdFactory, SmtpdServer

DELAY_MS = 30
TAKEOVER = re.compile(r"lane (\S+) taken over from (\S+), whose lease ran out")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared(request: pytest.FixtureRequest) -> tuple[AppContext, dict[str, str]]:
    """A database and key that ``sendas worker`` processes open too, and their environment."""
    name = "shared_sqlite" if request.param == "sqlite" else "pg_shared"
    ctx, env = request.getfixturevalue(name)
    env = {**env, "SENDAS_LOG_LEVEL": "INFO", "SENDAS_WORKER_TAKEOVER_SECONDS": "1.5",
           "SENDAS_WORKER_HEARTBEAT_SECONDS": "0.2"}  # fmt: skip
    return ctx, env


def lane_owners(ctx: AppContext, lanes: list[str]) -> dict[str, int]:
    """How many of ``lanes`` each worker drives now."""
    with ctx.db.read() as s:
        rows = s.execute(
            select(Lane.owner, func.count())
            .where(Lane.name.in_(lanes), Lane.owner.is_not(None))
            .group_by(Lane.owner)
        )
        return {str(owner): int(n) for owner, n in rows}


def live_workers(ctx: AppContext) -> list[str]:
    with ctx.db.read() as s:
        return list(s.scalars(select(LiveWorker.id).where(LiveWorker.expires_at >= utcnow())))


async def _aliases_with_mail(
    ctx: AppContext, smtpd: SmtpdFactory, per_alias: int
) -> tuple[list[str], list[int], SmtpdServer]:
    """Four paced aliases with ``per_alias`` messages each, their lanes held."""
    actor = make_actor(ctx, "share@example.com")
    server = await smtpd("none", pipelining=True)
    aliases = [
        make_alias(ctx, actor, server, delay_ms=DELAY_MS, name=f"Share{k}") for k in range(4)
    ]
    lanes = [alias_lane(a) for a in aliases]
    with ctx.db.write() as s:
        hold_lanes(s, lanes, "held by the test until every worker runs")
    ids = [i for a in aliases for i in queue(ctx, actor, a, per_alias)]
    return lanes, ids, server


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", [1, 2])
async def test_live_workers_share_the_lanes_and_send_each_message_once(
    workers: int,
    shared: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = shared
    lanes, ids, server = await _aliases_with_mail(ctx, smtpd, 60)
    logs = [tmp_path / f"worker{k}.log" for k in range(workers)]
    procs = await spawn_workers(sendas_worker, env, logs)
    try:
        await wait_for(lambda: len(live_workers(ctx)) == workers, within=60)
        with ctx.db.write() as s:
            release_held(s, lanes)
        expected = [4] if workers == 1 else [2, 2]
        await wait_for(lambda: sorted(lane_owners(ctx, lanes).values()) == expected, within=60)
        await wait_for(all_final(ctx, ids), within=120)
    finally:
        await stop_workers(procs)

    assert set(statuses(ctx, ids).values()) == {"sent"}
    counts = received_ids(server.recorder)
    assert len(counts) == len(ids) == 240 and max(counts.values()) == 1
    assert live_workers(ctx) == []  # each withdrew when it stopped


@pytest.mark.timeout(180)
async def test_a_killed_workers_lanes_go_to_the_other(
    shared: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = shared
    lanes, ids, server = await _aliases_with_mail(ctx, smtpd, 150)
    logs = [tmp_path / f"worker{k}.log" for k in range(2)]
    procs = await spawn_workers(sendas_worker, env, logs)
    try:
        await wait_for(lambda: len(live_workers(ctx)) == 2, within=60)
        with ctx.db.write() as s:
            release_held(s, lanes)
        await wait_for(lambda: sorted(lane_owners(ctx, lanes).values()) == [2, 2], within=60)
        victim_id = next(iter(lane_owners(ctx, lanes)))
        victim = next(p for p in procs if p.pid == int(victim_id.split(":")[1]))
        os.killpg(victim.pid, signal.SIGKILL)  # no clean stop: its row stays, and expires
        await victim.wait()
        await wait_for(all_final(ctx, ids), within=120)
        survivors = live_workers(ctx)
    finally:
        await stop_workers(procs)

    assert len(survivors) == 1 and survivors[0] != victim_id
    taken = [
        lane
        for path in logs
        for lane, previous in TAKEOVER.findall(path.read_text())
        if previous == victim_id
    ]
    # The survivor took over exactly the lanes the victim drove (two of the four).
    assert len(taken) == len(set(taken)) == 2 and set(taken) <= set(lanes)
    found = Counter(statuses(ctx, ids).values())
    assert set(found) <= {"sent", "unknown"}, found
    counts = received_ids(server.recorder)
    assert max(counts.values()) == 1, "a message reached the server twice"
    assert len(counts) >= found["sent"]


@pytest.mark.timeout(180)
async def test_a_worker_started_late_gets_its_share_from_a_busy_one(
    shared: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    """One worker drives all four lanes; a second one starts: the first hands back the two
    beyond its share at their next claims (long before its lanes' hold time), and each
    message still reaches the server once."""
    ctx, env = shared
    lanes, ids, server = await _aliases_with_mail(ctx, smtpd, 150)
    logs = [tmp_path / "first.log", tmp_path / "late.log"]
    procs = await spawn_workers(sendas_worker, env, logs[:1])
    try:
        await wait_for(lambda: len(live_workers(ctx)) == 1, within=60)
        with ctx.db.write() as s:
            release_held(s, lanes)
        await wait_for(lambda: list(lane_owners(ctx, lanes).values()) == [4], within=60)
        procs += await spawn_workers(sendas_worker, env, logs[1:])
        await wait_for(lambda: sorted(lane_owners(ctx, lanes).values()) == [2, 2], within=60)
        await wait_for(all_final(ctx, ids), within=120)
    finally:
        await stop_workers(procs)

    assert "handing back 2 lane(s) for other workers" in logs[0].read_text()
    assert set(statuses(ctx, ids).values()) == {"sent"}
    counts = received_ids(server.recorder)
    assert len(counts) == len(ids) == 600 and max(counts.values()) == 1
