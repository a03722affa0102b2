"""The durable outbox: enqueue, claims with leases, pacing per alias, retries, the worker."""

from sendas.outbox.config import OutboxConfig
from sendas.outbox.worker import Worker, embedded_worker_hook

__all__ = ["OutboxConfig", "Worker", "embedded_worker_hook"]
