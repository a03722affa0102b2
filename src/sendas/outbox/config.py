"""Tunables of the outbox worker. Defaults suit production; tests shrink the times."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutboxConfig:
    """How a worker claims, paces, retries and gives up.

    Raises ``ValueError`` for values that cannot work (e.g. a heartbeat slower than the lease).
    """

    lease_seconds: float = 5.0
    """A claim (of a lane, or of messages) holds this long unless renewed by the heartbeat
    (the takeover time): a worker that died frees its lanes after this; its mid-submission
    messages become ``unknown``."""
    beat_seconds: float = 1.0
    """The heartbeat renews the claims this often (at most a third of ``lease_seconds``)."""
    poll_interval: float = 0.25
    """Seconds between looks for lanes with work."""
    wake_seconds: float = 0.025
    """While waiting for the next look, the wake file (:mod:`sendas.db.wake`) is checked
    this often (``SENDAS_WORKER_WAKE_MS``; 0: never, poll only)."""
    batch_size: int = 400
    """Messages one claim of a lane without delay takes, at most (``batch_seconds`` of the
    link's time, when less). A claim leaves them ``queued`` under a lease, to be marked
    ``sending`` a window's chunk at a time: a larger claim spreads a claim's fixed cost
    (about a millisecond: the lane, the alias, its endpoint) over more messages, and
    leaves nothing more ``unknown`` after a crash."""
    batch_seconds: float = 0.5
    """A claim of a lane without delay is sized to take about this long on the wire, so
    that a slow link claims little ahead of what it can send (what a crash leaves
    ``unknown`` is bounded by ``send_window``, not by the claim)."""
    first_batch: int = 20
    """Messages in a lane's first claim, before the link's speed is known."""
    paced_window_seconds: float = 10.0
    """A paced lane claims at most this much time's worth of slots at once."""
    max_paced_batch: int = 50
    max_attempts: int = 6
    """Submissions answered with a temporary (4xx) reply before the message is ``failed``."""
    backoff_base: float = 30.0
    backoff_max: float = 3600.0
    reconnect_base: float = 1.0
    reconnect_max: float = 300.0
    """A lane whose server cannot be reached pauses this long at most between tries."""
    lane_hold_seconds: float = 60.0
    """A busy lane is handed back after this long, so other workers get their turn."""
    max_lanes: int = 1000
    """Lanes one worker drives at once."""
    idle_check_seconds: float = 5.0
    """A connection idle longer than this is checked with NOOP before reuse."""
    copy_concurrency: int = 4
    """Copies to Sent (IMAP APPEND) running at once."""
    smtp_timeout: float = 30.0
    render_processes: int = 2
    """Processes rendering form letters beside the worker (0: a thread of the worker;
    ``SENDAS_RENDER_PROCESSES``)."""
    render_nice: int = 10
    """How much lower the render processes' CPU priority is than the worker's (Unix nice,
    0 to 19; ``SENDAS_RENDER_NICE``)."""
    max_connections: int = 10
    """SMTP connections one lane (without delay) may use at once, whatever its alias says
    (``SENDAS_MAX_CONNECTIONS_CAP``)."""

    send_window: int = 64
    """Messages one connection of a lane without delay holds ``sending`` and not yet
    recorded, at most (``SENDAS_SEND_WINDOW``): the pipelined window. They are marked in
    chunks just ahead of the wire, so a worker killed mid-send leaves at most this many
    ``unknown``; the rest of its claim is still ``queued`` (a lease) and comes back."""
    group_commit_ms: float = 3.0
    """Replies arriving within this long are recorded in one commit
    (``SENDAS_GROUP_COMMIT_MS``)."""

    def __post_init__(self) -> None:
        if min(self.lease_seconds, self.poll_interval, self.beat_seconds) <= 0:
            raise ValueError("lease_seconds, beat_seconds and poll_interval must be positive")
        if min(self.batch_size, self.first_batch, self.max_paced_batch, self.max_lanes) < 1:
            raise ValueError("batch sizes and max_lanes must be at least 1")
        if self.wake_seconds < 0:
            raise ValueError("wake_seconds cannot be negative")
        if self.batch_seconds <= 0:
            raise ValueError("batch_seconds must be positive")
        if self.render_processes < 0:
            raise ValueError("render_processes cannot be negative")
        if not 0 <= self.render_nice <= 19:
            raise ValueError("render_nice must be from 0 to 19")
        if self.send_window < 1 or self.group_commit_ms < 0:
            raise ValueError("send_window must be at least 1, group_commit_ms not negative")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base <= 0 or self.backoff_max < self.backoff_base:
            raise ValueError("backoff_base must be positive and not above backoff_max")

    @property
    def heartbeat_seconds(self) -> float:
        # Two beats may be missed (a slow commit) before another worker takes over.
        return min(self.beat_seconds, self.lease_seconds / 3)
