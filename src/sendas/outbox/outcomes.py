"""What the server's answer means for one message: a pure function, no I/O.

Per recipient: ``sent`` and ``failed`` are final; a recipient still ``pending`` is offered
again on the next attempt (never one that was already accepted, so nobody is mailed twice).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sendas.errors import (
    AuthError,
    DeliveryUnknown,
    MailConnectionError,
    MailTimeoutError,
    OAuthError,
    OutboundRefused,
    ReplyError,
    SmtpUtf8Required,
    TransportError,
)
from sendas.smtp import ReplyKind, SubmitResult, classify, hint_for, pause_until
from sendas.statuses import MessageStatus

FINAL_RECIPIENT = (MessageStatus.SENT, MessageStatus.FAILED)

UNKNOWN_HINT = (
    "The connection broke after the message went out, so the server may have accepted it. "
    "Check the recipient's mailbox or your Sent folder, then choose 'send again' or "
    "'mark as sent'."
)


@dataclass
class LaneAction:
    """What the lane (the alias's queue) must do after an answer."""

    pause_until: datetime | None = None
    pause_reason: str | None = None
    needs_attention: str | None = None  # reason; the alias gets needs_reauth
    reconnect: bool = False


@dataclass
class Outcome:
    status: MessageStatus
    recipient_results: dict[str, dict[str, Any]]
    server_reply: str | None = None
    error_step: str | None = None
    hint: str | None = None
    count_attempt: bool = False
    next_attempt_at: datetime | None = None
    lane: LaneAction = field(default_factory=LaneAction)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped, with equal jitter."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def pending_recipients(recipients: list[str], results: dict[str, Any] | None) -> list[str]:
    if not results:  # a first attempt: every recipient (most messages)
        return list(recipients)
    return [r for r in recipients if (results.get(r) or {}).get("status") not in FINAL_RECIPIENT]


def _entry(status: str, code: int | None, text: str, hint: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": status}
    if code is not None:
        entry["code"] = code
    if text:
        entry["reply"] = text
    if hint:
        entry["hint"] = hint
    return entry


def _reply_str(code: int, text: str) -> str:
    return f"{code} {' '.join(text.splitlines())}".strip()


class _Builder:
    def __init__(
        self, recipients: list[str], previous: dict[str, Any] | None, now: datetime
    ) -> None:
        self.results: dict[str, dict[str, Any]] = dict(previous or {})
        self.recipients = recipients
        self.now = now
        self.lane = LaneAction()
        self.transient = False
        self.reply: str | None = None
        self.step: str | None = None
        self.hint: str | None = None

    def note(self, step: str, reply: str, hint: str) -> None:
        if self.reply is None:
            self.reply, self.step, self.hint = reply, step, hint

    def by_kind(
        self, recipients: list[str], kind: str, step: str, code: int | None, text: str
    ) -> None:
        """Apply one non-2xx answer to ``recipients`` according to its kind."""
        reply = _reply_str(code, text) if code is not None else text
        hint = hint_for(step, code, text)
        self.note(step, reply, hint)
        if kind == ReplyKind.PERMANENT:
            for r in recipients:
                self.results[r] = _entry(MessageStatus.FAILED, code, reply, hint)
            return
        for r in recipients:
            self.results[r] = _entry("pending", code, reply, hint)
        if kind in (ReplyKind.RATE_LIMIT, ReplyKind.QUOTA):
            until = pause_until(kind, code or 0, text, self.now)
            if self.lane.pause_until is None or (until and until > self.lane.pause_until):
                self.lane.pause_until, self.lane.pause_reason = until, f"{reply} - {hint}"
        elif kind == ReplyKind.AUTH:
            self.lane.needs_attention = f"{reply} - {hint}"
        else:
            self.transient = True


def interpret(
    answer: SubmitResult | TransportError,
    *,
    recipients: list[str],
    previous: dict[str, Any] | None,
    attempts: int,
    now: datetime,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
) -> Outcome:
    """The new state of a message after one submission of ``recipients`` (those pending).

    ``attempts`` counts earlier submissions answered with a temporary failure (while a
    message is active; the recording also counts the submission that settles it).
    """
    b = _Builder(recipients, previous, now)
    if isinstance(answer, DeliveryUnknown):
        return Outcome(
            MessageStatus.UNKNOWN,
            b.results,
            server_reply=answer.server_reply or str(answer),
            error_step=answer.step or "data",
            hint=UNKNOWN_HINT,
        )
    if isinstance(answer, MailConnectionError | MailTimeoutError):
        # Nothing of this message reached the end of data: offer it again over a new
        # connection; no attempt is counted (the lane backs off if it keeps failing).
        b.note(answer.step, str(answer), answer.hint)
        b.lane.reconnect = True
        return Outcome(MessageStatus.QUEUED, b.results, server_reply=b.reply,
                       error_step=b.step, hint=b.hint, lane=b.lane)  # fmt: skip
    if isinstance(answer, SubmitResult):
        sent_reply = _apply_result(b, answer)
    else:
        _apply_error(b, answer, recipients)
        sent_reply = None
    if b.transient:
        _burn_if_last(b, recipients, attempts + 1 >= max_attempts)
    out = Outcome(_status(b), b.results, lane=b.lane, count_attempt=b.transient)
    if out.status == MessageStatus.RETRYING:
        out.next_attempt_at = now + timedelta(
            seconds=backoff(attempts + 1, backoff_base, backoff_max)
        )
    if out.status == MessageStatus.SENT:
        # Some recipients may have been refused: their replies are in recipient_results.
        out.server_reply = sent_reply or b.reply
        if b.reply is not None:
            out.error_step, out.hint = b.step, b.hint
    else:
        out.server_reply, out.error_step, out.hint = b.reply or sent_reply, b.step, b.hint
    return out


def _apply_result(b: _Builder, answer: SubmitResult) -> str | None:
    """The server's replies to one transaction; the reply that accepted it, if it did."""
    for r, (code, text, kind) in answer.rejected.items():
        b.by_kind([r], kind, "rcpt_to", code, text)
    if answer.delivered:
        assert answer.final_reply is not None
        reply = _reply_str(*answer.final_reply)
        for r in answer.accepted:
            b.results[r] = _entry(MessageStatus.SENT, answer.final_reply[0], reply, None)
        return reply
    if answer.final_reply is not None:
        code, text = answer.final_reply
        b.by_kind(answer.accepted, classify(code, text), "data", code, text)
    return None


def _apply_error(b: _Builder, answer: TransportError, recipients: list[str]) -> None:
    """An error before or instead of the end of data (not a broken link, not unknown)."""
    if isinstance(answer, AuthError | OAuthError):
        reply = answer.server_reply or str(answer)
        b.note(answer.step or "auth", reply, answer.hint)
        b.lane.needs_attention = f"{reply} - {answer.hint}".strip(" -")
    elif isinstance(answer, SmtpUtf8Required | OutboundRefused):  # no retry changes these
        b.note(answer.step, str(answer), answer.hint)
        for r in recipients:
            b.results[r] = _entry(MessageStatus.FAILED, None, str(answer), answer.hint)
    elif isinstance(answer, ReplyError):
        text = answer.server_reply.partition(" ")[2] if answer.code else str(answer)
        b.by_kind(recipients, answer.kind, answer.step or "mail_from", answer.code, text)
        if answer.code is None:  # refused locally (a bad address): nothing to retry
            for r in recipients:
                b.results[r]["status"] = MessageStatus.FAILED
            b.transient = False
    else:
        b.note(answer.step, answer.server_reply or str(answer), answer.hint)
        b.transient = True


def _burn_if_last(b: _Builder, recipients: list[str], last_attempt: bool) -> None:
    """After the last allowed attempt, the recipients still pending have failed."""
    if not last_attempt:
        return
    for r in recipients:
        entry = b.results.get(r) or {}
        if entry.get("status") == "pending":
            b.results[r] = {**entry, "status": MessageStatus.FAILED}


def _status(b: _Builder) -> MessageStatus:
    if pending_recipients(b.recipients, b.results):
        # Not transient: a paused lane or an alias needing attention; nobody burned.
        return MessageStatus.RETRYING if b.transient else MessageStatus.QUEUED
    all_recipients = list(b.results) if b.results else b.recipients
    if any((b.results.get(r) or {}).get("status") == MessageStatus.SENT for r in all_recipients):
        return MessageStatus.SENT
    return MessageStatus.FAILED
