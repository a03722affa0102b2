"""Rendering form letters for the API, the pages and the CLI: previews, and every recipient
of a new letter checked before anything is queued.

Renders run in a few child processes shared by the whole service (:mod:`sendas.render_process`)
within the per-recipient :class:`~sendas.sandbox.Limits`: a template that loops forever costs
its own request a time limit and a process, never a thread of the API. A caller waits for a
free process at most the check budget; a letter's whole check has that budget too.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sendas.config import Settings
from sendas.errors import Conflict, TemplateError, TemplateOverBudget
from sendas.merge import Recipient, compile_templates
from sendas.render_process import RenderProcess, Work
from sendas.sandbox import Limits

CHUNK = 500
"""Recipients sent to a check process at once."""

Letter = tuple[str, str | None, str | None]
"""subject, text, html."""


@dataclass(frozen=True)
class Outcome:
    """One recipient's render: the subject, or the problem (with the part or field at fault)."""

    subject: str | None = None
    text: str | None = None
    html: str | None = None
    problem: str | None = None
    field: str | None = None
    over_budget: bool = False


# --- in the child ------------------------------------------------------------------------------


def _setup(arg: None) -> None:
    return None


def _handle(
    state: None, letter: tuple[Letter, bool], item: tuple[str, dict[str, Any]], limits: Limits
) -> Outcome:
    (subject, text, html), whole = letter
    email, fields = item
    try:
        rendered = compile_templates(subject, text, html).render(Recipient(email, fields), limits)
    except TemplateOverBudget as exc:
        return Outcome(problem=str(exc), field=exc.field, over_budget=True)
    except TemplateError as exc:
        return Outcome(problem=str(exc), field=exc.field)
    if whole:
        return Outcome(rendered.subject, rendered.text, rendered.html)
    return Outcome(rendered.subject)


def _overtime(item: tuple[str, dict[str, Any]], limits: Limits) -> Outcome:
    return Outcome(problem=str(limits.timed_out()), over_budget=True)


# --- in the service ----------------------------------------------------------------------------


class Checker:
    """A few check processes, lent one at a time to a caller."""

    def __init__(self, limits: Limits, processes: int, wait_seconds: float) -> None:
        self.limits = limits
        self.wait_seconds = wait_seconds
        work: Work[None, tuple[str, dict[str, Any]], Outcome] = Work(
            _setup, None, _handle, _overtime
        )
        self._all = [RenderProcess(work, limits) for _ in range(processes)]
        self._free: queue.Queue[RenderProcess[None, tuple[str, dict[str, Any]], Outcome]]
        self._free = queue.Queue()
        for process in self._all:
            self._free.put(process)

    @contextmanager
    def _process(self) -> Iterator[RenderProcess[None, tuple[str, dict[str, Any]], Outcome]]:
        try:
            process = self._free.get(timeout=self.wait_seconds)
        except queue.Empty:
            raise Conflict("every template renderer is busy: try again in a moment") from None
        try:
            yield process
        finally:
            self._free.put(process)

    def one(self, letter: Letter, email: str, fields: dict[str, Any]) -> Outcome:
        """One recipient's whole render (a preview)."""
        with self._process() as process:
            return process.run([(email, fields)], (letter, True))[0]

    def many(
        self, letter: Letter, recipients: Sequence[tuple[str, dict[str, Any]]], until: float
    ) -> list[Outcome]:
        """The subject or problem of each recipient, in order; fewer past ``until``."""
        with self._process() as process:
            return process.run(recipients, (letter, False), until)

    def close(self) -> None:
        for process in self._all:
            process.stop()


_CHECKERS: dict[tuple[Limits, int, float], Checker] = {}
_LOCK = threading.Lock()


def checker(settings: Settings) -> Checker:
    """The service's checker for these settings (started once, processes on first use)."""
    limits = Limits(settings.template_render_timeout, settings.template_max_output)
    key = (limits, settings.template_check_processes, settings.template_check_seconds)
    with _LOCK:
        found = _CHECKERS.get(key)
        if found is None:
            found = Checker(limits, key[1], key[2])
            _CHECKERS[key] = found
        return found


def deadline(settings: Settings) -> float:
    """The monotonic time by which a new letter's check must be done."""
    return time.monotonic() + settings.template_check_seconds
