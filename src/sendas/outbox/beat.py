"""The worker's heartbeat: renews the leases of its lanes and held messages every
``heartbeat_seconds`` from a thread of its own, with its own database connection.

Independent of the event loop and of the worker's write queue on purpose: a long SMTP
reply, a slow batch commit or a busy loop must not cost a live worker its lanes, while a
dead one (SIGKILL, a lost host) stops beating and is taken over after ``lease_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import utcnow
from sendas.outbox.lanes import heartbeat
from sendas.outbox.txqueue import networked, retrying

log = logging.getLogger("sendas.outbox")

Snapshot = Callable[[], tuple[list[str], list[int]]]
T = TypeVar("T")


class Heartbeat:
    """A daemon thread beating for ``owner`` until :meth:`stop`.

    ``snapshot`` returns the lanes and message ids held now; ``on_lost`` is called (from
    this thread) with lanes found taken over by another worker. A beat whose connection was
    lost is tried again within ``retry_seconds`` (``SENDAS_DB_RETRY_SECONDS``)."""

    def __init__(
        self,
        db: Database,
        owner: str,
        every: float,
        lease: float,
        snapshot: Snapshot,
        on_lost: Callable[[set[str]], object],
        *,
        retry_seconds: float = 0.0,
    ) -> None:
        self._db, self._owner, self._every, self._lease = db, owner, every, lease
        self._retry_seconds = retry_seconds
        self._snapshot, self._on_lost = snapshot, on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sendas-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._every + 30)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.beat()
            except Exception:
                log.exception("renewing the leases failed")

    def beat(self) -> None:
        lanes, message_ids = self._snapshot()
        if not lanes and not message_ids:
            return
        until = utcnow() + timedelta(seconds=self._lease)
        # A lease taken less than half a beat ago lasts until the next beat and more.
        fresh = until - timedelta(seconds=self._every / 2)
        lost = self._write(lambda s: heartbeat(s, self._owner, lanes, message_ids, until, fresh))
        if lost:
            self._on_lost(lost)

    def _write(self, fn: Callable[[Session], T]) -> T:
        """``fn`` in a write transaction, run again on a new connection when the connection
        was lost, within ``retry_seconds``: a short PostgreSQL restart must not cost the
        worker its leases (the renewal re-checks the owner of every row, so a second run
        after a commit whose answer was lost changes nothing more)."""

        def once() -> T:
            with self._db.write() as session:
                return fn(session)

        deadline = time.monotonic() + self._retry_seconds
        return retrying(once, deadline, networked=networked(self._db))
