"""The worker's heartbeat: renews the leases of its lanes and held messages every
``heartbeat_seconds`` from a thread of its own, with its own database connection.

Independent of the event loop and of the worker's write queue on purpose: a long SMTP
reply, a slow batch commit or a busy loop must not cost a live worker its lanes, while a
dead one (SIGKILL, a lost host) stops beating and is taken over after ``lease_seconds``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sendas.db.engine import Database
from sendas.db.models import utcnow
from sendas.outbox.lanes import heartbeat

log = logging.getLogger("sendas.outbox")

Snapshot = Callable[[], tuple[list[str], list[int]]]


class Heartbeat:
    """A daemon thread beating for ``owner`` until :meth:`stop`.

    ``snapshot`` returns the lanes and message ids held now; ``on_lost`` is called (from
    this thread) with lanes found taken over by another worker."""

    def __init__(
        self,
        db: Database,
        owner: str,
        every: float,
        lease: float,
        snapshot: Snapshot,
        on_lost: Callable[[set[str]], object],
    ) -> None:
        self._db, self._owner, self._every, self._lease = db, owner, every, lease
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
        with self._db.write() as session:
            lost = heartbeat(session, self._owner, lanes, message_ids, until, fresh)
        if lost:
            self._on_lost(lost)
