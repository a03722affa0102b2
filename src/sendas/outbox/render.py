"""Rendering form letters away from the worker's event loop and database thread.

Composing a ~5 KB message costs about as much CPU as everything else the worker does for
it, so it runs in a process of its own (another core, another GIL) by default, or in a
thread when processes are turned off or the database lives in memory. Requests waiting
together are rendered in one call, in one read session that keeps the compiled templates
of each campaign across calls.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sendas.db.engine import make_engine
from sendas.outbox.claims import Rendered, RenderInput, render_many

log = logging.getLogger("sendas.outbox")

SESSION_USES = 200
"""Calls served by one read session before it is renewed (its template cache with it)."""
GROUP = 64
"""Messages rendered per call at most, so that the first requests are answered soon."""


class _RenderState:
    """One read session kept across calls; its transaction ends after each call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session: Session | None = None
        self.uses = 0

    def render(self, batches: list[list[RenderInput]]) -> list[list[Rendered | str]]:
        if self.session is None or self.uses >= SESSION_USES:
            if self.session is not None:
                self.session.close()
            self.session, self.uses = Session(self.engine), 0
        self.uses += 1
        try:
            return render_many(self.session, batches)
        finally:
            self.session.rollback()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


_STATE: _RenderState | None = None


def _init_process(url: str, parent: int) -> None:
    global _STATE
    _STATE = _RenderState(make_engine(url))

    def orphaned() -> None:  # the worker was killed (SIGKILL): do not linger
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=orphaned, daemon=True, name="sendas-render-orphan").start()


def _stop_pool(pool: ProcessPoolExecutor, grace: float = 0.5) -> None:
    """Shut the render processes down, terminating those not gone within ``grace`` seconds.

    A process still starting (importing sendas takes seconds on a busy machine) would only
    see the shutdown once started, and the worker must stop within moments of SIGTERM.
    Nothing is lost: the processes only read, and no render is pending by now.
    """
    # Private, but the only handle on the processes (Python 3.14 adds terminate_workers());
    # read before shutdown() drops it.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(5)


def _ready() -> bool:
    return _STATE is not None


def _ignore(future: asyncio.Future[bool]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a failure shows up at the first render instead


def _render_in_process(batches: list[list[RenderInput]]) -> list[list[Rendered | str]]:
    assert _STATE is not None, "the render process was not initialised"
    return _STATE.render(batches)


_Request = tuple[float, list[RenderInput], "asyncio.Future[list[Rendered | str]]"]


class Renderer:
    """``await renderer.render(items, due)``: one result per item, in order. Requests are
    served earliest ``due`` (monotonic seconds) first."""

    def __init__(self, engine: Engine, processes: int) -> None:
        self._engine = engine
        url = engine.url
        in_memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
        self._processes = 0 if in_memory else max(0, processes)
        self._local = _RenderState(engine)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendas-render")
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[_Request] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sendas-render")
        if self._processes:
            # Start the processes now: importing sendas in them costs a second of CPU,
            # which must not fall on the first paced submissions.
            executor, _ = self._executor()
            loop = asyncio.get_running_loop()
            for _ in range(self._processes):
                loop.run_in_executor(executor, _ready).add_done_callback(_ignore)

    async def render(self, items: list[RenderInput], due: float = 0.0) -> list[Rendered | str]:
        if self._closed:
            raise RuntimeError("the renderer is closed")
        future: asyncio.Future[list[Rendered | str]] = asyncio.get_running_loop().create_future()
        self._pending.append((due, items, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(_stop_pool, pool)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._local.close)
        self._thread.shutdown(wait=True)

    def _executor(self) -> tuple[Executor, Any]:
        if self._processes and self._pool is None:
            url = self._engine.url.render_as_string(hide_password=False)
            self._pool = ProcessPoolExecutor(
                max_workers=self._processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process, initargs=(url, os.getpid()),
            )  # fmt: skip
        if self._pool is not None:
            return self._pool, _render_in_process
        return self._thread, self._local.render

    async def _spread(
        self, pool: Executor, batches: list[list[RenderInput]]
    ) -> list[list[Rendered | str]]:
        """Render ``batches`` on all the processes at once: each batch is cut into one piece
        per process (a lane's whole batch would otherwise keep one process busy alone)."""
        n = self._processes
        pieces: list[tuple[int, list[RenderInput]]] = []  # (batch index, items)
        for index, items in enumerate(batches):
            step = max(1, -(-len(items) // n))
            pieces.extend((index, items[i : i + step]) for i in range(0, len(items), step))
        parts = [list(range(k, len(pieces), n)) for k in range(min(n, len(pieces)))]
        loop = asyncio.get_running_loop()
        done = await asyncio.gather(*(
            loop.run_in_executor(pool, _render_in_process, [pieces[j][1] for j in part])
            for part in parts
        ))  # fmt: skip
        out: list[list[Rendered | str]] = [[] for _ in batches]
        by_piece: dict[int, list[Rendered | str]] = {}
        for part, rendered in zip(parts, done, strict=True):
            by_piece.update(zip(part, rendered, strict=True))
        for j, (index, _) in enumerate(pieces):
            out[index].extend(by_piece[j])
        return out

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                self._pending.sort(key=lambda r: r[0])
                count = taken = 0
                while taken < len(self._pending) and (taken == 0 or count < GROUP):
                    count += len(self._pending[taken][1])
                    taken += 1
                group, self._pending = self._pending[:taken], self._pending[taken:]
                batches = [items for _, items, _ in group]
                executor, fn = self._executor()
                try:
                    if executor is self._pool and self._processes > 1:
                        results = await self._spread(executor, batches)
                    else:
                        results = await loop.run_in_executor(executor, fn, batches)
                except BrokenProcessPool:
                    log.warning("the render process stopped; rendering in a thread instead")
                    self._processes, self._pool = 0, None
                    results = await loop.run_in_executor(self._thread, self._local.render, batches)
                except Exception as exc:
                    for _, _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            if self._closed:
                return
