"""Waking the workers when work arrives, instead of at their next poll.

A transaction that makes mail ready to go (a message queued, a form letter created or
resumed, a message sent again) calls :func:`wake_workers` on its session; once it commits,
the file ``outbox.wake`` in the data folder is touched. A worker looks at the file's
modification time every ``worker_wake_ms`` (a ``stat``: microseconds) while it waits for
its next poll, and polls at once when it changed: mail starts going out within
milliseconds of the request instead of up to a poll interval later. A worker on another
machine (sharing a PostgreSQL database) does not see the file and finds the work at its
next poll, as before; so does work that becomes ready with time (a retry, a pause over).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from sendas.private_files import private_file

WAKE_FILE = "outbox.wake"
_KEY = "sendas.wake_workers"


def wake_workers(session: Session) -> None:
    """Wake the workers once ``session``'s transaction commits (nothing if it rolls back)."""
    session.info[_KEY] = True


def touch_on_commit(sessions: sessionmaker[Session], path: Path) -> None:
    """Touch ``path`` after each commit of a session from ``sessions`` that asked to wake
    the workers."""
    private_file(path)

    def committed(session: Session) -> None:
        if session.info.pop(_KEY, False):
            # An explicit time: the kernel's own stamp is coarse (a tick), so two touches
            # within one tick would look like one.
            now = time.time_ns()
            with contextlib.suppress(OSError):  # the worker still polls: never an error
                os.utime(path, ns=(now, now))

    def rolled_back(session: Session, *_: Any) -> None:
        session.info.pop(_KEY, None)

    event.listen(sessions, "after_commit", committed)
    event.listen(sessions, "after_soft_rollback", rolled_back)


class WakeWatch:
    """``changed()``: the wake file was touched since the last look."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen = self._stamp()

    def _stamp(self) -> int:
        try:
            return os.stat(self._path).st_mtime_ns
        except OSError:
            return 0

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True
