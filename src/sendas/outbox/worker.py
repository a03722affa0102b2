"""The outbox worker: one asyncio process driving many alias lanes at once.

Each lane (an alias, or the database's own settings) is driven by at most one worker at a
time, through one SMTP connection reused across messages (see :mod:`sendas.outbox.driver`).
The worker polls for lanes with work, renews its leases (a heartbeat thread of its own, see
:mod:`sendas.outbox.beat`), reaps the messages of workers that died, and makes the copies to
Sent. Database work of all lanes is coalesced: one commit marks the next message of 500
lanes ``sending``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial

from sqlalchemy.orm import Session

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import utcnow
from sendas.db.wake import WAKE_FILE, WakeWatch
from sendas.endpoints import TokenProviders
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.sent import append_to_sent
from sendas.oauth.tokens import AliasTokens
from sendas.outbox.audit import sent_copy_login_refused, sent_copy_unrecorded
from sendas.outbox.beat import Heartbeat
from sendas.outbox.bounces.watch import BounceWatch
from sendas.outbox.config import OutboxConfig
from sendas.outbox.driver import LaneDriver, reauth_reason
from sendas.outbox.lanes import acquire_lanes, excess_lanes, lane_needs_attention
from sendas.outbox.record import reap_expired, record_sent_copy
from sendas.outbox.render import Renderer
from sendas.outbox.settle_from_sent import SentSettler, SettleConfig, remember_filing
from sendas.outbox.state import DriverContext
from sendas.outbox.txqueue import TxQueue
from sendas.sandbox import Limits

log = logging.getLogger("sendas.outbox")

GC_THRESHOLD = 7000
"""Allocations between young collections in a worker process (Python's default: 700)."""


def config_from_settings(settings: Settings) -> OutboxConfig:
    """The worker's tunables that are settings (the rest keep their defaults)."""
    return OutboxConfig(
        lease_seconds=settings.worker_takeover_seconds,
        beat_seconds=settings.worker_heartbeat_seconds,
        smtp_timeout=settings.smtp_timeout,
        max_connections=settings.max_connections_cap,
        send_window=settings.send_window,
        group_commit_ms=settings.group_commit_ms,
        render_processes=settings.render_processes,
        render_nice=settings.render_nice,
        wake_seconds=settings.worker_wake_ms / 1000,
    )


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


class Worker:
    """Drains the outbox until :meth:`request_stop`. Many may run against one database."""

    def __init__(
        self,
        ctx: AppContext,
        config: OutboxConfig | None = None,
        *,
        worker_id: str | None = None,
        token_providers: TokenProviders | None = None,
    ) -> None:
        self.ctx = ctx
        self.cfg = config or config_from_settings(ctx.settings)
        self.id = worker_id or new_worker_id()
        self._stopping = asyncio.Event()
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._drivers: dict[str, LaneDriver] = {}
        self._next_share_check = 0.0  # monotonic: when to look for lanes beyond our share
        self._cooldown: dict[str, float] = {}
        self._copies: set[asyncio.Task[None]] = set()
        self._copy_slots = asyncio.Semaphore(self.cfg.copy_concurrency)
        self._tx = TxQueue(ctx.db, retry_seconds=ctx.settings.db_retry_seconds)
        limits = Limits(ctx.settings.template_render_timeout, ctx.settings.template_max_output)
        self._renderer = Renderer(
            ctx.db.engine, self.cfg.render_processes, limits, self.cfg.render_nice
        )
        if token_providers is None:
            # Signed-in aliases: access tokens refreshed before expiry, one refresh at a time.
            token_providers = AliasTokens(ctx.db, ctx.secrets).token_provider
        self._shared = DriverContext(
            self.cfg, self.id, ctx.secrets, token_providers, self._tx, self._renderer,
            self._stopping, self._start_copy, outbound=ctx.settings.outbound_policy,
        )  # fmt: skip
        self._settler = SentSettler(
            self._tx.run, ctx.secrets, SettleConfig.from_settings(ctx.settings),
            token_providers=token_providers, outbound=ctx.settings.outbound_policy,
        )  # fmt: skip

    # --- control --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the submissions in flight, hand the lanes back, then return from run()."""
        self._stopping.set()

    @property
    def lanes(self) -> list[str]:
        return list(self._lanes)

    async def run(self) -> None:
        self._tx.start()
        self._renderer.start()
        loop = asyncio.get_running_loop()
        beat = Heartbeat(
            self.ctx.db, self.id, self.cfg.heartbeat_seconds, self.cfg.lease_seconds,
            self._holding, lambda lost: loop.call_soon_threadsafe(self._lost, lost),
            retry_seconds=self.ctx.settings.db_retry_seconds,
        )  # fmt: skip
        beat.start()
        bounces = self._start_bounce_watch()
        log.info("outbox worker %s started", self.id)
        settling = asyncio.create_task(self._settler.run(self._stopping), name="settle-from-sent")
        wake = WakeWatch(self.ctx.settings.data_dir / WAKE_FILE)
        try:
            while not self._stopping.is_set():
                try:
                    await self._poll()
                except Exception:
                    log.exception("outbox poll failed; trying again")
                await self._until_next_poll(wake)
        finally:
            self._stopping.set()
            beat.retire()  # no lanes taken any more: not counted in the others' shares
            await self._drain()  # beating on: a drain can take an SMTP timeout
            settling.cancel()  # an IMAP look-up in flight is simply made again later
            await asyncio.gather(settling, return_exceptions=True)
            if bounces is not None:
                await self._stop_bounce_watch(bounces)
            await asyncio.to_thread(beat.stop)
            await self._tx.close()
            await self._renderer.close()
            log.info("outbox worker %s stopped", self.id)

    async def _until_next_poll(self, wake: WakeWatch) -> None:
        """Wait ``poll_interval``, or less: until mail is queued by a process sharing the
        data folder (the wake file; at least a fifth of the interval after the last poll,
        and only while this worker can take more lanes), or the worker is told to stop."""
        if not self.cfg.wake_seconds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.cfg.poll_interval)
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        due, soonest = start + self.cfg.poll_interval, start + self.cfg.poll_interval / 5
        woken = False
        # A plain sleep per look (a stop waits at most one): cheaper than a timed wait.
        while not self._stopping.is_set() and (left := due - loop.time()) > 0:
            await asyncio.sleep(min(self.cfg.wake_seconds, left))
            woken = woken or (wake.changed() and len(self._lanes) < self.cfg.max_lanes)
            if woken and loop.time() >= soonest:
                return

    def _start_bounce_watch(self) -> asyncio.Task[None] | None:
        """The INBOX watch for bounces (sendas.outbox.bounces), stopped with the worker."""
        if not self.ctx.settings.bounce_scan:
            return None
        watch = BounceWatch(self.ctx, self.id, self._stopping, self._shared.token_providers)
        return asyncio.create_task(watch.run(), name="bounce watch")

    async def _stop_bounce_watch(self, bounces: asyncio.Task[None]) -> None:
        """Wait for the watch's rounds, bounded: a round's blocking IMAP steps each take up
        to the timeout; past the bound it is cancelled (its thread ends on its own)."""
        done, _ = await asyncio.wait([bounces], timeout=self.cfg.smtp_timeout + 5)
        if not done:
            log.warning("bounce watch still busy at shutdown: cancelled")
            bounces.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):  # it logs its failures
            await bounces

    async def _drain(self) -> None:
        tasks = list(self._lanes.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.cfg.smtp_timeout + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._copies:
            await asyncio.wait(list(self._copies), timeout=self.cfg.smtp_timeout + 5)

    async def _poll(self) -> None:
        now = utcnow()
        mono = time.monotonic()
        self._cooldown = {k: v for k, v in self._cooldown.items() if v > mono}
        skip = set(self._lanes) | set(self._cooldown)
        limit = self.cfg.max_lanes - len(self._lanes)
        cfg, owner = self.cfg, self.id

        check_share = bool(self._lanes) and mono >= self._next_share_check
        driving = set(self._lanes)

        def op(session: Session) -> tuple[list[str], int]:
            reap_expired(session, now, owner)
            taken = acquire_lanes(session, owner, now, cfg, skip=skip, limit=limit)
            return taken, excess_lanes(session, owner, now, driving) if check_share else 0

        taken, excess = await self._tx.run(op)
        for name in taken:
            if name not in self._lanes and not self._stopping.is_set():
                self._lanes[name] = asyncio.create_task(self._drive(name), name=f"lane {name}")
        if excess:
            self._hand_back(excess)

    def _hand_back(self, count: int) -> None:
        """Ask the drivers of ``count`` lanes (the longest driven) to hand them back at their
        next claim, for the workers below their share; not again before the others have
        had a lease's time to take them (no back and forth)."""
        already = sum(1 for d in self._drivers.values() if d.hand_back)  # not turned over yet
        asked = [d for d in self._drivers.values() if not d.hand_back][: max(count - already, 0)]
        if not asked:
            return
        for driver in asked:
            driver.hand_back = True
        log.info("handing back %d lane(s) for other workers: %s", len(asked),
                 ", ".join(d.st.name for d in asked))  # fmt: skip
        self._next_share_check = time.monotonic() + self.cfg.lease_seconds

    async def _drive(self, lane: str) -> None:
        driver = self._drivers[lane] = LaneDriver(self._shared, lane)
        try:
            if await driver.run():
                # Handed back after a long hold: leave it alone for a moment so that other
                # workers get their turn.
                self._cooldown[lane] = time.monotonic() + 2 * self.cfg.poll_interval
        finally:
            self._lanes.pop(lane, None)
            self._drivers.pop(lane, None)

    def _holding(self) -> tuple[list[str], list[int]]:
        """What the heartbeat renews; called from its thread. Copying a dict's keys or the
        difference of two sets of ints holds the GIL throughout: a consistent state."""
        return list(self._lanes), list(self._shared.held - self._shared.waiting)

    def _lost(self, lanes: set[str]) -> None:
        # Our beats did not reach the database in time: the lane's driver finds it gone at
        # its next claim (claims check the owner) and stops.
        log.warning("lanes taken over by another worker: %s", ", ".join(sorted(lanes)))

    # --- copy to Sent ---------------------------------------------------------------------

    def _start_copy(
        self, imap: ImapEndpoint, message_id: int, raw: bytes, lane: str, auth: str
    ) -> None:
        task = asyncio.create_task(self._copy(imap, message_id, raw, lane, auth))
        self._copies.add(task)
        task.add_done_callback(partial(self._copy_done, message_id))

    def _copy_done(self, message_id: int, task: asyncio.Task[None]) -> None:
        # The message is sent either way; only its copy's record is lost (never unretrieved).
        self._copies.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("the copy to Sent of message %s was not recorded", message_id,
                      exc_info=exc)  # fmt: skip

    async def _copy(
        self, imap: ImapEndpoint, message_id: int, raw: bytes, lane: str, auth: str
    ) -> None:
        async with self._copy_slots:
            outcome = await append_to_sent(imap, raw, check_filed=True)
        detail = outcome.reason or outcome.hint

        def record(s: Session) -> None:
            refused = outcome.step == "login" and not outcome.needs_reauth
            # Retried after a lost answer, the copy is recorded already: one audit row.
            audit_refusal = refused and sent_copy_unrecorded(s, message_id)
            record_sent_copy(s, message_id, outcome.status, detail)
            remember_filing(s, lane, outcome.filed_by_server)
            if audit_refusal:
                sent_copy_login_refused(s, message_id, imap.host, imap.port)

        await self._tx.run(record)
        if outcome.needs_reauth:
            # The XOAUTH2 login found the grant revoked (the alias is flagged already): the
            # lane waits for a reconnect, as when SMTP finds it; the sent message stays sent.
            reason, now = reauth_reason(auth), utcnow()
            log.warning("lane %s: sign-in revoked during the copy to Sent", lane)
            await self._tx.run(lambda s: lane_needs_attention(s, lane, reason, now))


async def embedded_worker_hook(ctx: AppContext) -> Callable[[], Awaitable[None]]:
    """``app.state.startup_hooks`` entry: run a worker inside ``sendas serve``."""
    worker = Worker(ctx)
    task = asyncio.create_task(worker.run(), name="sendas-embedded-worker")

    async def stop() -> None:
        worker.request_stop()
        await task

    return stop


async def run_until_signalled(worker: Worker) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, then stop it gracefully."""
    import gc
    import signal
    import sys

    # The database thread holds the GIL for up to the switch interval (5 ms by default),
    # which would delay a paced submission by as much; 1 ms keeps pacing tight.
    sys.setswitchinterval(0.001)
    # Each message leaves many short-lived containers behind (rows, dicts, dataclasses), so
    # the cyclic collector ran every few messages and its older generations walked the
    # whole loaded application: about 40% of a claim's CPU. What exists at start is frozen
    # out of its passes, and it runs about ten times less often.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    await worker.run()
