"""What a lane driver keeps between batches (:class:`LaneState`), and what the lanes of
one worker share (:class:`DriverContext`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sendas.endpoints import TokenProviders
from sendas.imap.endpoint import ImapEndpoint
from sendas.net.policy import OutboundPolicy
from sendas.outbox.claims import Claim, Rendered
from sendas.outbox.config import OutboxConfig
from sendas.outbox.render import Renderer
from sendas.outbox.txqueue import TxQueue
from sendas.secrets import SecretBox
from sendas.smtp import SmtpEndpoint, SmtpSession

Prefetched = tuple[Claim, dict[int, Rendered | str]]


@dataclass
class LaneState:
    name: str
    session: SmtpSession | None = None
    endpoint: SmtpEndpoint | None = None
    delay_ms: int = 0
    last_start_mono: float | None = None
    last_start_wall: datetime | None = None
    last_used: float = 0.0
    reconnects: int = 0
    commit_lead: float = 0.005  # seconds; recent time to commit "sending"
    # The next batch of a lane without delay, claimed and rendered while one is in flight.
    prefetch: asyncio.Task[Prefetched | None] | None = None
    per_message: float | None = None  # seconds on the wire per pipelined message, smoothed

    def batch_limit(self, cfg: OutboxConfig) -> int:
        """How many messages the next pipelined batch may hold: about ``batch_seconds``."""
        if self.per_message is None:
            return cfg.first_batch
        fits = int(cfg.batch_seconds / max(self.per_message, 1e-6))
        return max(1, min(cfg.batch_size, fits))

    def note_batch(self, messages: int, seconds: float) -> None:
        each = seconds / max(1, messages)
        self.per_message = each if self.per_message is None else 0.7 * self.per_message + 0.3 * each

    @property
    def next_floor(self) -> datetime | None:
        """The earliest next start allowed by the previous actual start."""
        if self.last_start_wall is None:
            return None
        return self.last_start_wall + timedelta(milliseconds=self.delay_ms)


@dataclass
class DriverContext:
    """What all lanes of one worker share."""

    cfg: OutboxConfig
    owner: str  # the worker's id, written as lease owner
    secrets: SecretBox
    token_providers: TokenProviders | None
    tx: TxQueue
    renderer: Renderer
    stopping: asyncio.Event
    # A sent message's copy to Sent: (imap, message id, raw, lane, the alias's auth).
    start_copy: Callable[[ImapEndpoint, int, bytes, str, str], None]
    held: set[int] = field(default_factory=set)  # message ids claimed (the heartbeat renews)
    # Those of ``held`` claimed by a paced lane and not marked sending yet: they wait for
    # their slots under the lane's lease (only its owner claims from it, on one connection),
    # so the heartbeat does not renew them (ten seconds of slots of every paced lane).
    waiting: set[int] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)  # lane -> failed connections
    # Which server addresses the aliases may reach (the settings'); strict unless told.
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
