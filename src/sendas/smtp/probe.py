"""Test Connection for SMTP: walk every step up to ``RCPT TO``, then ``RSET``/``QUIT``.
No message is ever sent. Stops at the first failure and says where and why.

:class:`ProbeResult` and :class:`StepRecorder` are protocol-neutral, so the IMAP part of
the test can record its own steps and be appended with :meth:`ProbeResult.merged`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sendas.errors import TransportError
from sendas.smtp.endpoint import SmtpEndpoint
from sendas.smtp.session import SmtpSession


@dataclass(frozen=True)
class ProbeStep:
    step: str
    ok: bool
    ms: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "ok": self.ok, "ms": round(self.ms, 1), "detail": self.detail}


@dataclass(frozen=True)
class ProbeFailure:
    step: str
    server_reply: str
    hint: str
    error: str


@dataclass(frozen=True)
class ProbeResult:
    """The steps done and, when one failed, where and why."""

    steps: list[ProbeStep]
    failure: ProbeFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def as_dict(self) -> dict[str, Any]:
        """``{"status": "OK", "steps": [...]}`` or ``{"status": "FAILED", "step",
        "server_reply", "hint", "error", "steps"}`` (the API's answer)."""
        steps = [s.as_dict() for s in self.steps]
        if self.failure is None:
            return {"status": "OK", "steps": steps}
        return {
            "status": "FAILED",
            "step": self.failure.step,
            "server_reply": self.failure.server_reply,
            "hint": self.failure.hint,
            "error": self.failure.error,
            "steps": steps,
        }

    def merged(self, other: ProbeResult) -> ProbeResult:
        """This result followed by ``other`` (e.g. the IMAP steps); the first failure wins."""
        return ProbeResult([*self.steps, *other.steps], self.failure or other.failure)


@dataclass
class StepRecorder:
    """Collects timed steps; usable as a :data:`~sendas.smtp.session.StepObserver`."""

    steps: list[ProbeStep] = field(default_factory=list)
    _last: float = field(default_factory=time.perf_counter)

    def __call__(self, step: str, ms: float, detail: str) -> None:
        self.steps.append(ProbeStep(step, True, ms, detail))
        self._last = time.perf_counter()

    def done(self, step: str, detail: str = "") -> None:
        """Record a step that succeeded, timed since the previous one."""
        self(step, (time.perf_counter() - self._last) * 1000.0, detail)

    def failed(self, exc: TransportError) -> ProbeResult:
        """Record the failing step (timed since the previous one) and build the result."""
        step = exc.step or "connect"
        ms = (time.perf_counter() - self._last) * 1000.0
        self.steps.append(ProbeStep(step, False, ms, str(exc)))
        failure = ProbeFailure(step, exc.server_reply, exc.hint, str(exc))
        return ProbeResult(list(self.steps), failure)

    def result(self) -> ProbeResult:
        return ProbeResult(list(self.steps))


async def probe(
    endpoint: SmtpEndpoint, from_address: str, *, rcpt_probe: str | None = None
) -> ProbeResult:
    """Resolve, connect, TLS, EHLO, AUTH, ``MAIL FROM:<from_address>``, ``RCPT TO`` (default:
    the from address itself), ``RSET``, ``QUIT``. Never raises a TransportError: failures
    are in the result."""
    recorder = StepRecorder()
    session = SmtpSession(endpoint, on_step=recorder)
    try:
        await session.open()
        await session.mail_from(from_address)
        await session.rcpt_to(rcpt_probe or from_address)
        await session.rset()
        await session.quit()
    except TransportError as exc:
        return recorder.failed(exc)
    finally:
        await session.close()
    return recorder.result()
