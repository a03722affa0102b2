"""The steps of a Test Connection, timed as they happen, and the result they add up to.

One recorder serves both protocols: the SMTP probe hands it to its transport as the step
observer, the IMAP session wraps each step in :meth:`StepRecorder.step`. Either way the
outcome is a :class:`~sendas.schemas.ConnectionTestResult`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sendas.errors import TransportError
from sendas.schemas import ConnectionTestResult, ConnectionTestStep


@dataclass
class StepDraft:
    """A step under way; its body may fill in ``detail`` (e.g. the folder it found)."""

    detail: str = ""


class StepRecorder:
    """Collects timed steps; callable as a :data:`~sendas.smtp.session.StepObserver`."""

    def __init__(self) -> None:
        self.steps: list[ConnectionTestStep] = []
        self._last = time.perf_counter()

    def __call__(self, name: str, ms: float, detail: str) -> None:
        """Record a step that succeeded, timed by the caller."""
        self._add(name, ok=True, ms=ms, detail=detail)

    @contextlib.contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[StepDraft]:
        """Time the body as step ``name``; the step failed when the body raises (a
        TransportError's message then becomes its detail)."""
        draft = StepDraft(detail)
        started = time.perf_counter()
        try:
            yield draft
        except TransportError as exc:
            self._add(name, ok=False, ms=self._since(started), detail=str(exc))
            raise
        except BaseException:
            self._add(name, ok=False, ms=self._since(started), detail=draft.detail)
            raise
        self._add(name, ok=True, ms=self._since(started), detail=draft.detail)

    def passed(self, *, sent_folder: str | None = None) -> ConnectionTestResult:
        return ConnectionTestResult(status="OK", steps=list(self.steps), sent_folder=sent_folder)

    def failed(self, exc: TransportError) -> ConnectionTestResult:
        """The result of a test stopped by ``exc``: its step, the server's reply, a hint.

        The failed step is recorded here unless :meth:`step` already did (the SMTP
        transport reports successes only), timed since the previous step.
        """
        name = exc.step or "connect"
        if not self.steps or self.steps[-1].ok:
            self._add(name, ok=False, ms=self._since(self._last), detail=str(exc))
        return ConnectionTestResult(
            status="FAILED",
            step=name,
            server_reply=exc.server_reply,
            hint=exc.hint,
            steps=list(self.steps),
        )

    @staticmethod
    def _since(started: float) -> float:
        return (time.perf_counter() - started) * 1000.0

    def _add(self, name: str, *, ok: bool, ms: float, detail: str) -> None:
        self.steps.append(ConnectionTestStep(name=name, ok=ok, ms=round(ms, 1), detail=detail))
        self._last = time.perf_counter()
