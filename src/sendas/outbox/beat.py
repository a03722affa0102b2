"""The worker's heartbeat: renews the leases of its lanes and held messages every
``heartbeat_seconds`` from a thread of its own, with its own database connection.

Independent of the event loop and of the worker's write queue on purpose: a long SMTP
reply, a slow batch commit or a busy loop must not cost a live worker its lanes, while a
dead one (SIGKILL, a lost host) stops beating and is taken over after ``lease_seconds``.

Each beat also announces the worker (``sendas.outbox.presence``): the live workers share
the lanes. The first beat is at start, so that the others count a new worker at once.
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
from sendas.outbox.presence import announce, sweep, withdraw
from sendas.outbox.txqueue import networked, retrying

log = logging.getLogger("sendas.outbox")

Snapshot = Callable[[], tuple[list[str], list[int]]]
T = TypeVar("T")
SWEEP_EVERY = 60  # beats between two sweeps of dead workers' rows


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
        self._beats = 0
        self._retired = False
        self._thread = threading.Thread(target=self._run, name="sendas-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating, then withdraw the announcement (the others stop counting us)."""
        self._stop.set()
        # A beat in progress may be retrying through a database restart.
        self._thread.join(timeout=self._every + self._retry_seconds + 30)
        try:
            with self._db.write() as session:
                withdraw(session, self._owner)
        except Exception:
            log.exception("withdrawing the worker's announcement failed (it expires)")

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:
                log.exception("renewing the leases failed")
            if self._stop.wait(self._every):
                return

    def retire(self) -> None:
        """The worker stops taking lanes (it drains): the others stop counting it now,
        while the beats go on renewing what it still holds."""
        self._retired = True

    def beat(self) -> None:
        lanes, message_ids = self._snapshot()
        self._beats += 1
        sweeping = self._beats % SWEEP_EVERY == 1

        def renew(session: Session) -> set[str]:
            # Timed at each try: a try that succeeds after a retry must not write a lease
            # that ran out meanwhile.
            now = utcnow()
            until = now + timedelta(seconds=self._lease)
            # A lease taken less than half a beat ago lasts until the next beat and more.
            fresh = until - timedelta(seconds=self._every / 2)
            if self._retired:
                withdraw(session, self._owner)
            else:
                announce(session, self._owner, now, until)
            if sweeping:
                sweep(session, now)
            if not lanes and not message_ids:
                return set()
            return heartbeat(session, self._owner, lanes, message_ids, until, fresh)

        lost = self._write(renew)
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
