"""Waking the workers when work arrives, instead of at their next poll.

A transaction that makes mail ready to go (a message queued, a form letter created or
resumed, a message sent again) calls :func:`wake_workers` on its session; once it commits,
the file ``outbox.wake`` in the data folder is touched. A worker looks at the file's
modification time every ``worker_wake_ms`` (a ``stat``: microseconds) while it waits for
its next poll, and polls soon when it changed (not more often than five times per poll
interval: a stream of API sends must not turn into a poll per message): mail starts
going out within milliseconds of the request instead of up to a poll interval later. A
worker with another data folder (on another machine, sharing a PostgreSQL database) does
not see the file and finds the work at its next poll, as before; so does work that
becomes ready with time (a retry, a pause over).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from sendas.private_files import private_file

log = logging.getLogger("sendas.outbox")

WAKE_FILE = "outbox.wake"
_KEY = "sendas.wake_workers"


def wake_workers(session: Session) -> None:
    """Wake the workers once ``session``'s transaction commits (nothing if it rolls back)."""
    session.info[_KEY] = True


def touch_on_commit(sessions: sessionmaker[Session], path: Path) -> None:
    """Touch ``path`` after each commit of a session from ``sessions`` that asked to wake
    the workers. A savepoint's release or rollback is not the transaction's: the flag waits
    for the real commit (or goes with the real rollback)."""
    try:
        private_file(path)
    except OSError as exc:  # a read-only data folder: the workers still poll
        log.warning("the workers' wake file %s cannot be created (%s): they find new mail "
                    "at their next poll", path, exc.strerror)  # fmt: skip

    def committed(session: Session) -> None:
        if session.in_nested_transaction() or not session.info.pop(_KEY, False):
            return
        _touch(path)

    def rolled_back(session: Session, previous: SessionTransaction) -> None:
        if not previous.nested:
            session.info.pop(_KEY, None)

    event.listen(sessions, "after_commit", committed)
    event.listen(sessions, "after_soft_rollback", rolled_back)


def _touch(path: Path) -> None:
    # An explicit time: the kernel's own stamp is coarse (a tick), so two touches within
    # one tick would look like one.
    now = time.time_ns()
    try:
        os.utime(path, ns=(now, now))
    except FileNotFoundError:  # removed while running: made again
        with contextlib.suppress(OSError):
            private_file(path)
            os.utime(path, ns=(now, now))
    except OSError:  # never an error for the transaction: the workers still poll
        pass


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
