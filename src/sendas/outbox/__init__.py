"""The durable outbox: enqueue, claims with leases, pacing per alias, retries, the worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sendas.outbox.config import OutboxConfig
    from sendas.outbox.worker import Worker, embedded_worker_hook

__all__ = ["OutboxConfig", "Worker", "embedded_worker_hook"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the services import the outbox's enqueue and statuses, which
    # must not load the worker (SMTP, IMAP, the renderer) into every API or CLI process.
    if name == "OutboxConfig":
        from sendas.outbox.config import OutboxConfig

        return OutboxConfig
    if name in ("Worker", "embedded_worker_hook"):
        from sendas.outbox import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
