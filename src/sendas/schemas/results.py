"""The Test Connection result: one type for SMTP, IMAP and both together."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
)

# --- Test Connection result -----------------------------------------------------------------


class ConnectionTestStep(BaseModel):
    """One step of a Test Connection (``connect``, ``tls``, ``auth``, ``imap_login`` ...)."""

    name: str
    ok: bool
    ms: float
    detail: str = ""


class ConnectionTestResult(BaseModel):
    """The answer of every Test Connection: SMTP, IMAP, or an alias with both.

    ``step``, ``server_reply`` and ``hint`` say where and why a failed test stopped;
    ``sent_folder`` names the Sent folder the IMAP part found. ``tls_found`` is the
    encryption the (first) server was reached with, ``implicit``, ``starttls`` or ``none``:
    with ``auto`` it is what the detection found, the mode to save to skip detecting.
    """

    status: Literal["OK", "FAILED"]
    step: str | None = None
    server_reply: str = ""
    hint: str = ""
    steps: list[ConnectionTestStep] = []
    sent_folder: str | None = None
    tls_found: Literal["implicit", "starttls", "none"] | None = None
    tested_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def followed_by(self, other: ConnectionTestResult, prefix: str) -> ConnectionTestResult:
        """This result, then ``other``'s steps named ``prefix + name``; the first failure
        stops the test, so it names the failed step."""
        renamed = [s.model_copy(update={"name": prefix + s.name}) for s in other.steps]
        steps = [*self.steps, *renamed]
        if not self.ok:
            return self.model_copy(update={"steps": steps})
        if not other.ok:
            step = prefix + (other.step or "connect")
            return other.model_copy(update={"step": step, "steps": steps})
        return self.model_copy(update={"steps": steps, "sent_folder": other.sent_folder})


def _stored_step(raw: Any, passed: bool) -> Any:
    """A step as older versions stored it: ``step`` for the name, ``status`` ("ok"/"OK"/
    "FAILED") instead of ``ok``, ``reply`` instead of ``detail``."""
    if not isinstance(raw, dict) or "name" in raw:
        return raw
    ok = raw["ok"] if isinstance(raw.get("ok"), bool) else str(raw.get("status")).upper() == "OK"
    return {
        "name": str(raw.get("step") or "?"),
        # Those versions marked IMAP steps of a passing test as failed; a pass has no failure.
        "ok": ok or passed,
        "ms": raw.get("ms") or 0,
        "detail": str(raw.get("detail") or raw.get("reply") or ""),
    }


def stored_test_result(raw: Any) -> Any:
    """A ``last_test`` as read from the database, whatever version wrote it, in the shape
    of :class:`ConnectionTestResult` (the one place that knows the older shapes)."""
    if not isinstance(raw, dict):
        return raw
    passed = raw.get("status") == "OK"
    steps = [_stored_step(s, passed) for s in raw.get("steps") or []]
    return {**raw, "step": raw.get("step") or None, "steps": steps}


StoredTestResult = Annotated[ConnectionTestResult | None, BeforeValidator(stored_test_result)]
