"""A child process that renders templates one item at a time, abandoned past its budget.

The sandbox (:mod:`sendas.sandbox`) stops a template cooperatively; this is the stop that
does not need the template's cooperation. In the child, an interval timer interrupts a
render at its time limit and the address space is capped; in the parent, an item whose
answer does not come within the limit plus a grace period gets the child killed, the item
failed as over time, and the rest of the job carried on in a fresh child.

The work is module-level functions passed by reference (so this module imports no other
part of sendas): ``setup(arg)`` builds the child's state once, ``handle(state, context,
item, limits)`` answers one item of a job (``context``: what the job's items share).
Results go back one by one, so a job's finished items survive a kill. A child may run at
a lower CPU priority than its parent (``nice``), so that on a busy machine the parent's own
work comes first.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from sendas.sandbox import Limits

log = logging.getLogger("sendas.render")

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

START_SECONDS = 120.0
"""How long a child may take to start (importing sendas takes seconds on a busy machine)."""
FLUSH_COUNT = 256
FLUSH_SECONDS = 0.02
MEMORY_HEADROOM = 1 << 30
"""Address space a child may add to what it holds once started (the rest is a template's)."""


_LATE = object()  # the job's own deadline passed


class OverTime(BaseException):
    """Raised in the child by the interval timer; not an ``Exception``, so no handler in the
    template engine or the database driver swallows it."""


@dataclass(frozen=True)
class Work(Generic[S, T, R]):
    """What a child does: ``setup(arg)`` once, then ``handle(state, context, item, limits)``
    per item; ``overtime(item, limits)`` is the answer for an item the child did not finish."""

    setup: Callable[[Any], S]
    setup_arg: Any
    handle: Callable[[S, Any, T, Limits], R]
    overtime: Callable[[T, Limits], R]


def _on_alarm(signum: int, frame: object) -> None:
    raise OverTime


def _cap_memory() -> None:
    try:
        import resource

        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = used + MEMORY_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError, ImportError):  # not Linux: the parent's kill remains
        log.debug("no address-space cap for the render process")


def _lower_priority(nice: int) -> None:
    if nice <= 0:
        return
    try:
        os.nice(nice)  # before the setup, which imports most of sendas
    except (OSError, AttributeError):  # not Unix: it runs at the parent's priority
        log.debug("the render process keeps its parent's priority")


def _watch_parent(parent: int) -> None:
    def orphaned() -> None:  # the parent was killed (SIGKILL): do not linger
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=orphaned, daemon=True, name="sendas-render-orphan").start()


class _Answers:
    """The child's answers, sent in groups: when many are ready, at the end of a job, and
    every :data:`FLUSH_SECONDS` by a thread of their own, so that the items finished before
    one that hangs reach the parent before it gives up on that one."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._ready: list[Any] = []
        threading.Thread(target=self._tick, daemon=True, name="sendas-render-flush").start()

    def add(self, answer: Any) -> None:
        with self._lock:
            self._ready.append(answer)
            if len(self._ready) >= FLUSH_COUNT:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._ready:
            try:
                self._conn.send(self._ready)
            except OSError:  # the parent is gone
                os._exit(0)
            self._ready = []

    def _tick(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


def _serve(
    conn: Connection, work: Work[Any, Any, Any], limits: Limits, parent: int, nice: int
) -> None:
    """The child's loop: a job is a list of items; one answer per item goes back in order."""
    _lower_priority(nice)
    _watch_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this stops
    signal.signal(signal.SIGALRM, _on_alarm)
    state = work.setup(work.setup_arg)
    _cap_memory()
    try:
        conn.send("ready")
    except OSError:  # the parent died while this process started (a SIGKILLed worker)
        return
    answers = _Answers(conn)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if job is None:
            return
        context, items = job
        for item in items:
            try:
                signal.setitimer(signal.ITIMER_REAL, limits.seconds + 0.2)
                answer = work.handle(state, context, item, limits)
            except (OverTime, MemoryError):
                answer = work.overtime(item, limits)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            answers.add(answer)
        answers.flush()


class RenderProcess(Generic[S, T, R]):
    """One child process; :meth:`run` blocks (call it from one thread at a time). ``nice``:
    how much lower the child's CPU priority is than this process's (Unix ``nice``)."""

    def __init__(self, work: Work[S, T, R], limits: Limits, nice: int = 0) -> None:
        self._work = work
        self._limits = limits
        self._nice = nice
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.kills = 0
        self._stopped = False

    @property
    def hard_seconds(self) -> float:
        """How long the parent waits for one item's answer before killing the child."""
        return self._limits.seconds * 1.5 + 1.0

    def start(self) -> None:
        """Start the child if it is not running; return once it is ready for work."""
        if self._process is not None and self._process.is_alive():
            return
        if self._stopped:
            raise RuntimeError("the render process was stopped")
        self.close()
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(
            target=_serve,
            args=(theirs, self._work, self._limits, os.getpid(), self._nice),
            daemon=True,
            name="sendas-render",
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        try:
            ready = ours.poll(START_SECONDS) and ours.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.close()
            raise RuntimeError("the render process did not start")

    def run(self, items: Sequence[T], context: Any = None, until: float | None = None) -> list[R]:
        """One answer per item, in order. An item not answered within :attr:`hard_seconds`
        gets ``overtime(item)`` and the child is replaced for the items after it. Past
        ``until`` (monotonic seconds) the child is stopped and the answers so far returned."""
        out: list[R] = []
        while len(out) < len(items):
            self.start()
            conn = self._conn
            assert conn is not None
            conn.send((context, list(items[len(out) :])))
            while len(out) < len(items):
                answer = self._answer(conn, until)
                if answer is _LATE:
                    return out
                if answer is None:  # killed: the item it was on is over time
                    out.append(self._work.overtime(items[len(out)], self._limits))
                    break
                out.extend(answer)
        return out

    def _answer(self, conn: Connection, until: float | None) -> Any:
        wait = self.hard_seconds
        late = until is not None and until < time.monotonic() + wait
        if until is not None:
            wait = max(0.0, min(wait, until - time.monotonic()))
        try:
            if conn.poll(wait):
                return conn.recv()
        except (EOFError, OSError):
            late = False
        if late:
            self.close()
            return _LATE
        self.kills += 1
        log.warning("a render ran past its time limit; its process was stopped")
        self.close()
        return None

    def close(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        if process is not None and process.is_alive():
            process.kill()
        if process is not None:
            process.join(5)

    def stop(self) -> None:
        """Ask the child to finish (if idle), then make sure it is gone; never restarted."""
        self._stopped = True
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            if self._process is not None:
                self._process.join(0.5)
        self.close()
