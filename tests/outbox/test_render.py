"""``sendas worker`` renders form letters in ``SENDAS_RENDER_PROCESSES`` processes of its
own, each below the worker's CPU priority by ``SENDAS_RENDER_NICE``: what ``ps`` shows of a
running worker."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from sendas.context import AppContext
from tests.outbox.conftest import SpawnWorker, worker_started


def _render_processes(worker: int) -> dict[int, int]:
    """The worker's render processes (its multiprocessing children, not the resource
    tracker) and the priority of each."""
    found: dict[int, int] = {}
    for task in Path(f"/proc/{worker}/task").iterdir():
        try:
            for child in (task / "children").read_text().split():
                command = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"spawn_main" in command and b"resource_tracker" not in command:
                    found[int(child)] = os.getpriority(os.PRIO_PROCESS, int(child))
        except (FileNotFoundError, ProcessLookupError):  # a thread or a child just ended
            continue
    return found


@pytest.mark.timeout(60)
async def test_render_processes_run_below_the_workers_priority(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    _, env = shared_sqlite
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = await sendas_worker(
            {**env, "SENDAS_RENDER_PROCESSES": "3", "SENDAS_RENDER_NICE": "6",
             "SENDAS_LOG_LEVEL": "INFO"},
            stderr=err,
        )  # fmt: skip
    await worker_started(log)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(19, ours + 6)
    deadline = time.monotonic() + 30
    # A child lowers its priority as it starts: wait for the three to be up.
    while sorted((seen := _render_processes(proc.pid)).values()) != [wanted] * 3:
        assert time.monotonic() < deadline, f"render processes and priorities: {seen}"
        await asyncio.sleep(0.05)
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == ours  # the worker keeps its own
