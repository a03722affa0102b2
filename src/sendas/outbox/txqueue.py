"""Group commit: database work of every lane, run in one thread, many operations per commit.

Lane tasks ``await tx.run(fn)``; the queue takes whatever operations are waiting, runs them
in one write transaction in its thread, commits, and only then answers each caller. So an
answer always means "committed" (the outbox marks a message ``sending`` and commits before
submitting it), while 500 lanes reaching their slots together cost one commit, not 500.
If one operation fails, the group is rolled back and each operation runs in its own
transaction, so one bad row never takes the others down.

A transaction that fails because the connection was lost (a PostgreSQL restart) is run
again, a few times within ``retry_seconds``: the outbox's transactions re-check the owner
and status of every row they change, so running one again (even after a commit whose
answer was lost) does not apply it twice; an outcome the server gave is then still stored.

Operations of one kind can also be *coalesced* (:meth:`TxQueue.run_batched`): the requests
waiting together are handed to one function as a list, so 500 lanes marking a message
``sending`` cost one SELECT and one UPDATE, not 500 of each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from sendas.db.engine import Database

log = logging.getLogger("sendas.outbox")

T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X")
Many = Callable[[Session, list[Any]], list[Any]]
"""Runs several requests of one kind; one result per request, in order."""


class _Entry:
    __slots__ = ("batched", "futures", "items", "many")

    def __init__(
        self, many: Many, items: list[Any], futures: list[asyncio.Future[Any]], batched: bool
    ) -> None:
        self.many = many
        self.items = items
        self.futures = futures
        self.batched = batched


def _single(fn: Callable[[Session], Any]) -> Many:
    return lambda session, items: [fn(session)]


class TxQueue:
    def __init__(
        self,
        db: Database,
        *,
        max_group: int = 500,
        session: Callable[[], AbstractContextManager[Session]] | None = None,
        name: str = "sendas-db",
        retry_seconds: float = 0.0,
    ) -> None:
        self._session = session or db.write
        self._retry_seconds = retry_seconds
        self._networked = networked(db)
        self._max_group = max_group
        self._pending: list[_Entry] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sendas-txqueue")

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a write transaction; return its result once committed."""
        if self._closed:
            raise RuntimeError("the transaction queue is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(_single(fn), [None], [future], False))
        self._wakeup.set()
        return await future

    async def run_batched(self, many: Callable[[Session, list[R]], list[T]], item: R) -> T:
        """Like :meth:`run`, but requests waiting together for the same ``many`` (the same
        function object) are run as one call ``many(session, [item, ...])``."""
        if self._closed:
            raise RuntimeError("the transaction queue is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(many, [item], [future], True))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                group = _coalesce(self._pending[: self._max_group])
                del self._pending[: self._max_group]
                outcomes = await loop.run_in_executor(self._executor, self._apply, group)
                for entry, answers in zip(group, outcomes, strict=True):
                    for future, (ok, value) in zip(entry.futures, answers, strict=True):
                        if future.done():
                            continue
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
            if self._closed:
                return

    def _apply(self, group: list[_Entry]) -> list[list[tuple[bool, Any]]]:
        deadline = time.monotonic() + self._retry_seconds  # one budget for the whole group
        if len(group) > 1 or len(group[0].items) > 1:
            try:
                return self._retrying(deadline, partial(self._all, group))
            except Exception:
                log.debug("group commit failed; running its operations one by one")
        results: list[list[tuple[bool, Any]]] = []
        for entry in group:
            answers: list[tuple[bool, Any]] = []
            for item in entry.items:
                try:
                    answers.append(
                        (True, self._retrying(deadline, partial(self._one, entry, item)))
                    )
                except Exception as exc:
                    answers.append((False, exc))
            results.append(answers)
        return results

    def _all(self, group: list[_Entry]) -> list[list[tuple[bool, Any]]]:
        with self._session() as session:
            return [_answers(e, e.many(session, e.items)) for e in group]

    def _one(self, entry: _Entry, item: Any) -> Any:
        with self._session() as session:
            return entry.many(session, [item])[0]

    def _retrying(self, deadline: float, work: Callable[[], X]) -> X:
        return retrying(work, deadline, networked=self._networked)


def networked(db: Database) -> bool:
    """Whether ``db`` has a connection to lose: SQLite has none, and its OperationalError is
    a lock or a schema error, never tried again."""
    return db.engine.dialect.name != "sqlite"


def retrying(work: Callable[[], X], deadline: float, *, networked: bool) -> X:
    """``work()``, run again after a lost connection (or one that could not be made: the
    server restarting) until ``deadline`` (monotonic); other errors are raised at once.
    Blocks the calling thread between tries: call it from a database thread."""
    pause = 0.1
    while True:
        try:
            return work()
        except DBAPIError as exc:
            lost = exc.connection_invalidated or (networked and isinstance(exc, OperationalError))
            if not lost or time.monotonic() + pause > deadline:
                raise
            log.warning("the database connection was lost; trying the transaction again")
        time.sleep(pause)  # the database thread: every write waits for the database anyway
        pause = min(pause * 2, 2.0)


def _answers(entry: _Entry, values: list[Any]) -> list[tuple[bool, Any]]:
    if len(values) != len(entry.items):
        raise RuntimeError("a batched operation returned the wrong number of results")
    return [(True, v) for v in values]


def _coalesce(entries: list[_Entry]) -> list[_Entry]:
    """Merge the requests of each batched kind into one entry (first position kept)."""
    merged: dict[Many, _Entry] = {}
    out: list[_Entry] = []
    for entry in entries:
        if not entry.batched:
            out.append(entry)
            continue
        into = merged.get(entry.many)
        if into is None:
            into = merged[entry.many] = _Entry(entry.many, [], [], True)
            out.append(into)
        into.items.extend(entry.items)
        into.futures.extend(entry.futures)
    return out
