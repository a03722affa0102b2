"""Why a lane driver stops sending (raised inside the driver, its pool and its window)."""

from __future__ import annotations

from sendas.errors import OutboundRefused


class LaneStop(Exception):
    """The lane cannot go on now (paused, needs attention, unreachable)."""


class ExtraGone(Exception):
    """An extra connection of a pool could not be opened: the pool shrinks, the lane goes on
    (a server limiting connections per client must not pause the working ones)."""


class Refused(Exception):
    """The outbound policy refuses the alias's server: its claimed messages fail."""

    def __init__(self, error: OutboundRefused) -> None:
        self.error = error
