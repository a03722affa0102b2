"""Starting and stopping the private server processes the fixtures run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path


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
