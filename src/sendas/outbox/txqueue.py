"""Group commit: database work of every lane, run in one thread, many operations per commit.

Lane tasks ``await tx.run(fn)``; the queue takes whatever operations are waiting, runs them
in one write transaction in its thread, commits, and only then answers each caller. So an
answer always means "committed" (the outbox marks a message ``sending`` and commits before
submitting it), while 500 lanes reaching their slots together cost one commit, not 500.
If one operation fails, the group is rolled back and each operation runs in its own
transaction, so one bad row never takes the others down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from sendas.db.engine import Database

log = logging.getLogger("sendas.outbox")

T = TypeVar("T")
Op = Callable[[Session], Any]


class TxQueue:
    def __init__(self, db: Database, *, max_group: int = 500) -> None:
        self._db = db
        self._max_group = max_group
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendas-db")
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sendas-txqueue")

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a write transaction; return its result once committed."""
        if self._closed:
            raise RuntimeError("the transaction queue is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
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
                group = self._pending[: self._max_group]
                del self._pending[: self._max_group]
                outcomes = await loop.run_in_executor(self._executor, self._apply, group)
                for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
            if self._closed:
                return

    def _apply(self, group: list[tuple[Op, asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        if len(group) > 1:
            try:
                with self._db.write() as session:
                    return [(True, fn(session)) for fn, _ in group]
            except Exception:
                log.debug("group commit failed; running its operations one by one")
        results: list[tuple[bool, Any]] = []
        for fn, _ in group:
            try:
                with self._db.write() as session:
                    results.append((True, fn(session)))
            except Exception as exc:
                results.append((False, exc))
        return results
