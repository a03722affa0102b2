"""The rule for ``max_connections`` (aliases and the database outgoing settings): 1 up to
the cap (``SENDAS_MAX_CONNECTIONS_CAP``), and more than 1 only without a delay, because
with a delay one connection keeps the exact pacing."""

from __future__ import annotations

from sendas.errors import FieldProblem

DEFAULT_CAP = 10


def connection_problems(max_connections: int, delay_ms: int, cap: int) -> list[FieldProblem]:
    """The problems of the stored pair (empty when it is fine), naming ``max_connections``."""
    loc = ("body", "max_connections")
    if max_connections > cap:
        return [FieldProblem(loc, f"must be at most {cap} (the server's limit)")]
    if max_connections > 1 and delay_ms > 0:
        return [
            FieldProblem(
                loc,
                "must be 1 when there is a delay between emails (one connection keeps "
                "the pace); more connections are for relays with delay_ms 0",
            )
        ]
    return []
