"""SMTP replies, classified once: named codes, the kind of a reply (what the outbox does with
it), and when to try again after a rate-limit or quota reply.

Classification reads the reply code and the enhanced status code (RFC 3463) first;
provider-specific wording only refines them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum


class SmtpCode(IntEnum):
    """Reply codes of RFC 5321, RFC 4954 (AUTH) and RFC 3207 (STARTTLS)."""

    SERVICE_READY = 220
    CLOSING = 221
    AUTH_SUCCESSFUL = 235
    COMPLETED = 250
    WILL_FORWARD = 251
    CANNOT_VRFY = 252
    AUTH_CONTINUE = 334
    START_MAIL_INPUT = 354
    SERVICE_UNAVAILABLE = 421
    PASSWORD_TRANSITION = 432
    MAILBOX_BUSY = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    TEMPORARY_AUTH_FAILURE = 454
    PARAMETERS_NOT_ACCOMMODATED = 455
    SYNTAX_ERROR = 500
    SYNTAX_ERROR_IN_PARAMETERS = 501
    NOT_IMPLEMENTED = 502
    BAD_SEQUENCE = 503
    PARAMETER_NOT_IMPLEMENTED = 504
    AUTH_REQUIRED = 530
    AUTH_MECHANISM_TOO_WEAK = 534
    AUTH_FAILED = 535
    ENCRYPTION_REQUIRED = 538
    MAILBOX_UNAVAILABLE = 550
    USER_NOT_LOCAL = 551
    EXCEEDED_STORAGE = 552
    MAILBOX_NAME_NOT_ALLOWED = 553
    TRANSACTION_FAILED = 554
    PARAMETERS_NOT_RECOGNIZED = 555


class ReplyKind(StrEnum):
    """What a reply means for the sender (the outbox branches on this)."""

    OK = "ok"
    TRANSIENT = "transient"  # retry this message later
    PERMANENT = "permanent"  # this message/recipient failed for good
    AUTH = "auth"  # credentials refused: the alias needs attention
    RATE_LIMIT = "rate_limit"  # slow down: pause the alias for a short while
    QUOTA = "quota"  # a sending quota is used up: pause the alias for longer


class LocalProblem(StrEnum):
    """Situations the client detects itself, before or instead of a server reply."""

    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    PLAINTEXT_AUTH_REFUSED = "plaintext_auth_refused"
    AUTH_NOT_OFFERED = "auth_not_offered"
    SMTPUTF8_NOT_OFFERED = "smtputf8_not_offered"
    INVALID_ADDRESS = "invalid_address"


_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def enhanced_status(text: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code at the start of ``text``, e.g. ``(5, 7, 8)``."""
    match = _ENHANCED.match(text)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3])


def mentions(text: str, *needles: str) -> bool:
    lowered = text.lower()
    return any(n in lowered for n in needles)


_QUOTA_WORDS = ("quota exceeded", "submissionquotaexceeded", "sending quota", "sending limit")
_RATE_WORDS = (
    "throttl",
    "rate limit",
    "sending rate",
    "too many login",
    "too many connections",
    "too many messages",
    "try again later",
    "thread limit",
    "concurrent connections",
)
_AUTH_ESC = {(7, 8), (7, 9), (7, 139), (7, 3), (7, 57), (7, 14), (7, 30)}


def classify(code: int, text: str = "") -> ReplyKind:
    """Classify a reply by its code, enhanced status code and (for providers) its wording."""
    if 200 <= code < 400:
        return ReplyKind.OK
    esc = enhanced_status(text)
    detail = (esc[1], esc[2]) if esc else None
    if detail == (4, 5) or mentions(text, *_QUOTA_WORDS):
        return ReplyKind.QUOTA
    if code == SmtpCode.PASSWORD_TRANSITION and detail == (3, 2):
        return ReplyKind.RATE_LIMIT  # Microsoft: too many concurrent connections
    if code < 500 and (mentions(text, *_RATE_WORDS) or (code == 421 and detail == (7, 0))):
        return ReplyKind.RATE_LIMIT
    if code == SmtpCode.TEMPORARY_AUTH_FAILURE and detail == (7, 0):
        return ReplyKind.RATE_LIMIT  # 454 4.7.0: too many login attempts (Google)
    if code in (SmtpCode.AUTH_MECHANISM_TOO_WEAK, SmtpCode.AUTH_FAILED):
        return ReplyKind.AUTH
    if code in (SmtpCode.AUTH_REQUIRED, SmtpCode.ENCRYPTION_REQUIRED):
        return ReplyKind.AUTH
    if detail in _AUTH_ESC and code >= 500:
        return ReplyKind.AUTH
    if 400 <= code < 500:
        return ReplyKind.TRANSIENT
    return ReplyKind.PERMANENT


# --- pauses ----------------------------------------------------------------------------------

_RETRY_AFTER = re.compile(
    r"(?:after|in|wait)\s+(\d{1,6})\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b", re.I
)


def _stated_delay(text: str) -> timedelta | None:
    match = _RETRY_AFTER.search(text)
    if match is None:
        return None
    amount, unit = int(match[1]), match[2].lower()
    if unit.startswith("h"):
        return timedelta(hours=amount)
    if unit.startswith("m"):
        return timedelta(minutes=amount)
    return timedelta(seconds=amount)


def pause_until(kind: ReplyKind | str, code: int, text: str, now: datetime) -> datetime | None:
    """When an alias's queue should resume after a rate-limit or quota reply; ``None`` for
    other kinds. A delay the server states ("try again in 10 minutes") wins."""
    if kind not in (ReplyKind.RATE_LIMIT, ReplyKind.QUOTA):
        return None
    stated = _stated_delay(text)
    if stated is not None:
        return now + stated
    esc = enhanced_status(text)
    detail = (esc[1], esc[2]) if esc else None
    if detail == (4, 5) or mentions(text, "daily"):
        # Rolling 24 h windows (Google): part of the quota frees up within hours.
        return now + timedelta(hours=4)
    if mentions(text, "submissionquotaexceeded") or kind == ReplyKind.QUOTA:
        return now + timedelta(hours=1)
    if code == 432 and detail == (3, 2):
        return now + timedelta(minutes=1)
    if mentions(text, "throttling", "maximum sending rate"):
        return now + timedelta(seconds=10)  # SES limits per second
    return now + timedelta(minutes=5)
