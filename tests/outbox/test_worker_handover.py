"""A worker that dies hands its lanes over once its heartbeats stop for the takeover time;
one that is alive keeps them however long a submission takes.

The times are settings, made small here; the assertions are on the order of events (the
lease the dead worker last renewed, the takeover the survivor logged), never on durations.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from sendas.context import AppContext
from sendas.db.models import Lane, utcnow
from sendas.outbox.config import OutboxConfig
from sendas.outbox.lanes import alias_lane
from tests.conftest import make_actor
from tests.outbox.conftest import (
    SpawnWorker,
    all_final,
    make_alias,
    message_id_of,
    queue,
    received_ids,
    sink_alias,
    spawn_workers,
    statuses,
    stop_workers,
    wait_for,
)
from tests.servers.smtpd import SmtpdFactory

TAKEOVER = re.compile(r"lane (\S+) taken over from (\S+), whose lease ran out at (\S+); now (\S+)")
WINDOW = OutboxConfig().send_window  # what one connection holds marked sending, at most


def _takeovers(logs: list[Path]) -> list[tuple[str, str, datetime, datetime]]:
    found = []
    for path in logs:
        for lane, owner, expired, now in TAKEOVER.findall(path.read_text()):
            found.append(
                (lane, owner, datetime.fromisoformat(expired), datetime.fromisoformat(now))
            )
    return found


@pytest.mark.postgres
@pytest.mark.timeout(180)
async def test_a_killed_workers_lane_is_taken_over_after_its_lease_without_doubles(
    pg_shared: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = pg_shared
    env = {**env, "SENDAS_WORKER_TAKEOVER_SECONDS": "1.5",
           "SENDAS_WORKER_HEARTBEAT_SECONDS": "0.2"}  # fmt: skip
    actor = make_actor(ctx, "handover@example.com")
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, actor, server)
    total = 2000
    ids = queue(ctx, actor, alias_id, total)
    logs = [tmp_path / f"worker{k}.log" for k in range(3)]
    procs = await spawn_workers(sendas_worker, env, logs)
    try:
        await wait_for(lambda: len(server.recorder.messages) >= 200, within=60)
        with ctx.db.read() as s:
            lane = s.get_one(Lane, alias_lane(alias_id))
            holder, lease_seen, seen_at = lane.owner, lane.owner_expires_at, utcnow()
        assert holder is not None and lease_seen is not None and lease_seen > seen_at
        pid = int(holder.split(":")[1])
        victim = next(p for p in procs if p.pid == pid)
        killed_at = utcnow()
        os.killpg(victim.pid, signal.SIGKILL)  # the worker and its render processes
        await victim.wait()
        await wait_for(all_final(ctx, ids), within=120)
        done_at = utcnow()
    finally:
        await stop_workers(procs)

    found = statuses(ctx, ids)
    by_status = Counter(found.values())
    assert set(by_status) <= {"sent", "unknown"}, by_status
    # Only what the killed worker had in flight may have reached the server unrecorded:
    # at most its window.
    assert by_status["unknown"] <= WINDOW, by_status
    counts = received_ids(server.recorder)
    assert max(counts.values()) == 1, "a message reached the server twice"
    assert len(counts) >= by_status["sent"]

    takeovers = [t for t in _takeovers(logs) if t[0] == alias_lane(alias_id)]
    assert len(takeovers) == 1, takeovers
    _, previous, expired, taken_at = takeovers[0]
    assert previous == holder
    # The survivor waited for the lease the dead worker had renewed (at least the one seen
    # before the kill), and took the lane only once it had run out.
    assert seen_at < lease_seen <= expired <= taken_at
    with ctx.db.read() as s:
        owner = s.scalar(select(Lane.owner).where(Lane.name == alias_lane(alias_id)))
    assert owner != holder
    took, completed = (taken_at - killed_at), (done_at - killed_at)
    print(
        f"\nkill -> takeover {took.total_seconds():.2f} s (setting 1.5 s), kill -> "
        f"all final {completed.total_seconds():.2f} s; unknown {by_status['unknown']}"
    )


async def _slow_server(delay: float, received: list[bytes]) -> asyncio.Server:
    """An SMTP server that answers the first message's data only after ``delay`` seconds,
    the others at once."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 slow.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-slow.test\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    await writer.drain()
                    data = b""
                    while (part := await reader.readline()) not in (b".\r\n", b""):
                        data += part
                    if not received:
                        await asyncio.sleep(delay)
                    received.append(data)
                    writer.write(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.timeout(120)
async def test_a_slow_but_alive_worker_keeps_its_lane(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = shared_sqlite
    # The first reply comes well after the takeover time, while the lane still has ready
    # mail: only the heartbeat, beating while the worker waits, keeps the lane (and the
    # messages in flight) from the other worker.
    env = {**env, "SENDAS_WORKER_TAKEOVER_SECONDS": "2", "SENDAS_WORKER_HEARTBEAT_SECONDS":
           "0.2", "SENDAS_SMTP_TIMEOUT": "15", "SENDAS_LOG_LEVEL": "INFO"}  # fmt: skip
    actor = make_actor(ctx, "slow@example.com")
    received: list[bytes] = []
    server = await _slow_server(6.0, received)
    port = server.sockets[0].getsockname()[1]
    ids = queue(ctx, actor, sink_alias(ctx, actor, port, "slow", 0), 200)
    logs = [tmp_path / f"worker{k}.log" for k in range(2)]
    try:
        procs = await spawn_workers(sendas_worker, env, logs)
        try:
            await wait_for(all_final(ctx, ids), within=60)
        finally:
            await stop_workers(procs)
    finally:
        server.close()
    assert set(statuses(ctx, ids).values()) == {"sent"}
    counts = Counter(map(message_id_of, received))
    assert len(counts) == 200 and max(counts.values()) == 1
    assert _takeovers(logs) == []
    assert not any("taken over by another worker" in p.read_text() for p in logs)
