"""The status vocabulary of messages and form letters: one enum each, used by the API, the
pages, the CLI and the templates. Only the outbox moves a message or a form letter from one
status to the next; this leaf module has no imports of its own, so every layer may use it.

Both are ``StrEnum``: a member compares equal to its string, so stored values, JSON and
templates keep working with plain strings.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"
    BOUNCED = "bounced"


class CampaignStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


READY = (MessageStatus.QUEUED, MessageStatus.RETRYING)
"""A worker may claim the message (once its ``next_attempt_at`` has come)."""
ACTIVE = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRYING)
"""The message may still go out; a form letter with none left is ``completed``."""
CANCELLABLE = READY
"""Not handed to a server yet: cancelling it cannot leave a copy half sent."""
DONE = tuple(s for s in MessageStatus if s not in ACTIVE)
"""Nothing more will happen to the message by itself."""
FINISHED = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)
"""The form letter will send nothing more."""
IN_USE = tuple(MessageStatus)
"""The statuses the outbox records (``bounced``: the bounce watch, sendas.outbox.bounces):
progress counts and the pages' filters offer these."""
