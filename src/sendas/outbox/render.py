"""Rendering form letters away from the worker's event loop and database thread.

Composing a ~5 KB message costs about as much CPU as everything else the worker does for
it, so it runs in processes of their own (another core, another GIL) by default, or in a
thread when processes are turned off or the database lives in memory.

One user's template must not delay another user's mail: each request (one lane's batch)
goes to a process of its own, a lane holds at most all processes but one, and a process
whose render runs past the time limit is killed and replaced (:mod:`sendas.render_process`),
so another lane waits for at most one over-budget render, never for a whole batch. In the
thread (no processes) only the sandbox's own, cooperative checks stop a template.

The processes run at a lower CPU priority than the worker (``render_nice``): they render
ahead of the wire, while the worker's database thread, which marks and records every
message, is what the sending waits for. Where the cores are busy, it gets them first.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sendas.db.engine import make_engine
from sendas.outbox.claims import Rendered, RenderInput, render_many
from sendas.outbox.late import RenderLate
from sendas.render_process import RenderProcess, Work
from sendas.sandbox import Limits

log = logging.getLogger("sendas.outbox")

SESSION_USES = 200
"""Renders served by one read session before it is renewed (its template cache with it)."""

Result = Rendered | str


class _RenderState:
    """One read session kept across calls; its transaction ends after each call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session: Session | None = None
        self.uses = 0

    def render(self, items: Sequence[RenderInput], limits: Limits) -> list[Result]:
        if self.session is None or self.uses >= SESSION_USES:
            if self.session is not None:
                self.session.close()
            self.session, self.uses = Session(self.engine), 0
        self.uses += 1
        try:
            return render_many(self.session, [list(items)], limits)[0]
        finally:
            self.session.rollback()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


# --- the work of a render process (module level: passed to the child by reference) -------------


def _setup(url: str) -> _RenderState:
    return _RenderState(make_engine(url))


def _handle(state: _RenderState, context: None, item: RenderInput, limits: Limits) -> Result:
    return state.render([item], limits)[0]


def _overtime(item: RenderInput, limits: Limits) -> Result:
    # Killed past the limit: at send time that is load, retried (sendas.outbox.late).
    return RenderLate(f"The form letter could not be rendered in time: {limits.timed_out()}")


class _Slot(Protocol):
    def start(self) -> None: ...
    def run(self, items: Sequence[RenderInput]) -> list[Result]: ...
    def stop(self) -> None: ...


class _ThreadSlot:
    """Rendering in a thread of the worker: no process to abandon."""

    def __init__(self, engine: Engine, limits: Limits) -> None:
        self._state = _RenderState(engine)
        self._limits = limits

    def start(self) -> None:
        pass

    def run(self, items: Sequence[RenderInput]) -> list[Result]:
        return self._state.render(items, self._limits)

    def stop(self) -> None:
        self._state.close()


@dataclass(order=True)
class _Request:
    due: float
    seq: int
    lane: str = field(compare=False)
    items: list[RenderInput] = field(compare=False)
    future: asyncio.Future[list[Result]] = field(compare=False)
    started: float = field(default=0.0, compare=False)  # monotonic, given to a process


class Renderer:
    """``await renderer.render(items, due, lane)``: one result per item, in order. Requests
    are served earliest ``due`` (monotonic seconds) first, among lanes not already holding
    their share of the processes."""

    def __init__(
        self, engine: Engine, processes: int, limits: Limits | None = None, nice: int = 0
    ) -> None:
        url = engine.url
        in_memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
        count = 0 if in_memory else max(0, processes)
        self.limits = limits or Limits()
        slots: list[_Slot]
        if count:
            work = Work(_setup, url.render_as_string(hide_password=False), _handle, _overtime)
            slots = [RenderProcess(work, self.limits, nice) for _ in range(count)]
        else:
            slots = [_ThreadSlot(engine, self.limits)]
        self._slots = slots
        self._free: list[_Slot] = []
        self._per_lane = max(1, len(slots) - 1)
        self._threads = ThreadPoolExecutor(len(slots), thread_name_prefix="sendas-render")
        self._pending: list[_Request] = []
        self._lanes: Counter[str] = Counter()
        self._running: dict[asyncio.Future[list[Result]], _Request] = {}
        self._seq = itertools.count()
        self._closed = False
        self._each: dict[str, float] = {}  # seconds per item in a process, by lane (smoothed)

    def start(self) -> None:
        """Start the processes now: importing sendas in them costs a second of CPU, which
        must not fall on the first paced submissions."""
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            started = loop.run_in_executor(self._threads, slot.start)
            started.add_done_callback(lambda f, s=slot: self._started(s, f))  # type: ignore[misc]

    def _started(self, slot: _Slot, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.warning("a render process did not start: %s", done.exception())
        self._free.append(slot)
        self._dispatch()

    async def render(
        self, items: list[RenderInput], due: float = 0.0, lane: str = ""
    ) -> list[Result]:
        if self._closed:
            raise RuntimeError("the renderer is closed")
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(due, next(self._seq), lane, items, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        """Give free processes to the earliest requests of lanes under their share."""
        loop = asyncio.get_running_loop()
        while self._free and self._pending:
            ready = [r for r in self._pending if self._lanes[r.lane] < self._per_lane]
            if not ready:
                return
            request = min(ready)
            self._pending.remove(request)
            if request.future.done():  # its driver stopped waiting
                continue
            slot = self._free.pop()
            request.started = time.monotonic()
            self._lanes[request.lane] += 1
            running = loop.run_in_executor(self._threads, slot.run, request.items)
            self._running[running] = request
            running.add_done_callback(
                lambda f, s=slot, r=request: self._finished(s, r, f)  # type: ignore[misc]
            )

    def each(self, lane: str) -> float | None:
        """Seconds one of ``lane``'s form letters takes in a render process (smoothed; time
        waiting for a free process not counted), or None before the first."""
        return self._each.get(lane)

    def _finished(self, slot: _Slot, request: _Request, done: asyncio.Future[list[Result]]) -> None:
        self._running.pop(done, None)
        self._lanes[request.lane] -= 1
        took = (time.monotonic() - request.started) / max(len(request.items), 1)
        last = self._each.get(request.lane)
        self._each[request.lane] = took if last is None else 0.7 * last + 0.3 * took
        self._free.append(slot)
        if not request.future.done():
            if done.cancelled():
                request.future.cancel()
            elif (exc := done.exception()) is not None:
                request.future.set_exception(exc)
            else:
                request.future.set_result(done.result())
        self._dispatch()

    async def close(self) -> None:
        """Stop at once: renders still running are abandoned (their messages stay queued
        and are claimed again), so a template running to its limit does not delay a stop."""
        self._closed = True
        for request in [*self._pending, *self._running.values()]:
            if not request.future.done():
                request.future.set_exception(RuntimeError("the renderer is closed"))
        self._pending.clear()
        # Not on the render threads: they may be waiting on the processes being stopped.
        await asyncio.gather(
            *(asyncio.to_thread(slot.stop) for slot in self._slots), return_exceptions=True
        )
        if self._running:
            await asyncio.wait(list(self._running))
        self._threads.shutdown(wait=False)
