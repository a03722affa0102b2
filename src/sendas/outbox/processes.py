"""Worker processes of ``sendas serve`` (``SENDAS_WORKER_PROCESSES`` above 1).

Each child is ``sendas worker --parent-pid <serve's pid>`` in a process group of its own
(its render processes with it). The server stops them with itself: SIGTERM (they finish the
submissions in flight and hand their lanes back), SIGKILL to the group past a grace time. A
child also gets SIGTERM from the kernel if the server dies without stopping them, so none
outlives it. A child that dies on its own is started again; its lanes are taken over by the
others after ``SENDAS_WORKER_TAKEOVER_SECONDS`` meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from sendas.context import AppContext

log = logging.getLogger("sendas.outbox")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
RESTART_DELAY = 1.0
COMMAND = ("-c", "from sendas.cli import main; main()", "worker")


def die_with_parent(parent_pid: int) -> None:
    """In a child of ``sendas serve``: get SIGTERM when it ends (Linux), and stop now if it
    ended already."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        raise SystemExit(0)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class WorkerProcesses:
    """``count`` children running ``sendas worker``, kept running until :meth:`stop`."""

    def __init__(self, count: int, grace: float) -> None:
        self.count = count
        self.grace = grace
        self.procs: list[asyncio.subprocess.Process] = []
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for slot in range(self.count):
            self.procs.append(await self._spawn())
            self._watchers.append(asyncio.create_task(self._watch(slot)))

    async def _spawn(self) -> asyncio.subprocess.Process:
        # Settings reach the child through the environment it inherits.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *COMMAND, "--parent-pid", str(os.getpid()), start_new_session=True
        )
        log.info("outbox worker process %d started", proc.pid)
        return proc

    async def _watch(self, slot: int) -> None:
        while True:
            proc = self.procs[slot]
            code = await proc.wait()
            _signal_group(proc.pid, signal.SIGKILL)  # what it started dies with it
            if self._stopping:
                return
            log.error("outbox worker process %d ended (exit %s); starting another", proc.pid, code)
            await asyncio.sleep(RESTART_DELAY)
            if self._stopping:
                return
            self.procs[slot] = await self._spawn()

    async def stop(self) -> None:
        """SIGTERM every child, SIGKILL its group past the grace time; wait for all."""
        self._stopping = True
        for proc in self.procs:
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGTERM)
        waits = [asyncio.ensure_future(p.wait()) for p in self.procs]
        _, late = await asyncio.wait(waits, timeout=self.grace)
        if late:
            for proc in self.procs:
                if proc.returncode is None:
                    _signal_group(proc.pid, signal.SIGKILL)
            await asyncio.gather(*late)
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGKILL)
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        log.info("outbox worker processes stopped")


async def worker_processes_hook(ctx: AppContext) -> Callable[[], Awaitable[None]]:
    """``app.state.startup_hooks`` entry: run ``SENDAS_WORKER_PROCESSES`` workers beside
    ``sendas serve``. The grace time lets each finish a submission in flight."""
    settings = ctx.settings
    workers = WorkerProcesses(settings.worker_processes, settings.smtp_timeout + 10)
    await workers.start()
    return workers.stop
