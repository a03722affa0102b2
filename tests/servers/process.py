"""Starting and stopping the private server processes the fixtures run."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up before any fork: a child must not load libraries between fork and exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, size: int = 4000) -> str:
    """The end of a log file, or "" when it cannot be read."""
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def stop_process_group(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], ask_to_stop: Callable[[], object]
) -> None:
    """Ask the master to stop, wait, then kill its whole process group: no daemon it
    started may outlive the tests."""
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            ask_to_stop()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdout is not None:
        proc.stdout.close()


# --- children that die with their test ------------------------------------------------------


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when the thread that started it ends (pytest
    killed, or timed out with ``os._exit``). Linux only; elsewhere a no-op."""
    parent = os.getpid()

    def preexec() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def child_options() -> dict[str, Any]:
    """Keyword arguments for ``subprocess.Popen`` and ``asyncio.create_subprocess_exec``:
    the child leads a process group of its own (so :func:`stop_group` reaches whatever it
    starts) and dies with the test process. Start children from the main thread: the
    parent-death signal fires when the starting *thread* ends."""
    return {"start_new_session": True, "preexec_fn": _die_with_parent()}


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """SIGTERM to the child's process group, SIGKILL after ``grace`` seconds; then SIGKILL to
    what is left of the group (it was started with :func:`child_options`)."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    _signal_group(proc.pid, signal.SIGKILL)


async def stop_group_async(proc: asyncio.subprocess.Process, grace: float = 3.0) -> None:
    """:func:`stop_group` for a child started with ``asyncio.create_subprocess_exec``."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)
