"""`sendas serve` with SENDAS_WORKER_PROCESSES=2 on SQLite: its worker processes deliver the
mail, and none of them outlives the server."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from sendas.context import AppContext
from tests.conftest import make_actor
from tests.outbox.conftest import (  # noqa: F401 - shared_sqlite is a fixture
    all_final,
    make_alias,
    queue,
    received_ids,
    shared_sqlite,
    statuses,
    wait_for,
)
from tests.servers.process import child_options, free_port, stop_group_async, tail
from tests.servers.smtpd import SmtpdFactory

SERVE = [sys.executable, "-c", "from sendas.cli import main; main()", "serve"]
STARTED = re.compile(r"outbox worker process (\d+) started")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


@pytest.mark.timeout(120)
async def test_serve_runs_worker_processes_and_stops_them(
    shared_sqlite: tuple[AppContext, dict[str, str]],  # noqa: F811 - the imported fixture
    smtpd: SmtpdFactory,
    tmp_path: Path,
) -> None:
    ctx, env = shared_sqlite
    actor = make_actor(ctx, "serve@example.com")
    server = await smtpd("none", pipelining=True)
    ids = queue(ctx, actor, make_alias(ctx, actor, server), 20)
    env = {**env, "SENDAS_WORKER_PROCESSES": "2", "SENDAS_PORT": str(free_port()),
           "SENDAS_LOG_LEVEL": "INFO"}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *SERVE, env=env, stdout=out, stderr=out, **child_options()
        )
    try:
        await wait_for(all_final(ctx, ids), within=60)
        await wait_for(lambda: len(STARTED.findall(log.read_text())) == 2, within=10)
        pids = [int(p) for p in STARTED.findall(log.read_text())]
        # Children of the server, each a process of its own (not the embedded worker).
        assert all(_parent_of(pid) == proc.pid for pid in pids), tail(log)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        await stop_group_async(proc)
    # uvicorn ends by raising the signal it caught again, after a clean shutdown.
    assert code in (0, -signal.SIGTERM), tail(log)
    assert "Application shutdown complete" in log.read_text()
    assert set(statuses(ctx, ids).values()) == {"sent"}
    counts = received_ids(server.recorder)
    assert len(counts) == 20 and max(counts.values()) == 1
    assert [pid for pid in pids if _alive(pid)] == [], tail(log)
    assert "outbox worker processes stopped" in log.read_text()
