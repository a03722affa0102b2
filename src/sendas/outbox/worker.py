"""The outbox worker: one asyncio process driving many alias lanes at once.

Each lane (an alias, or the database's own settings) is driven by at most one worker at a
time, through one SMTP connection reused across messages: pipelined batches when the
alias has no delay, paced single submissions otherwise. Slots are reserved in the lane's
row when claiming (``next_send_at``), planned from the previous planned start (no drift),
and never earlier than ``delay_ms`` after the previous actual start.

Form letters are rendered after the claim, in a thread of their own (not inside the write
transaction), and stored in the commit that marks them ``sending``. Database work of all
lanes is coalesced: one commit marks the next message of 500 lanes ``sending``.
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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session

from sendas.context import AppContext
from sendas.db.models import utcnow
from sendas.errors import AuthError, OAuthError, ReplyError, TransportError
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.sent import append_to_sent
from sendas.outbox import pacing, store
from sendas.outbox.config import OutboxConfig
from sendas.outbox.outcomes import backoff
from sendas.outbox.render import Renderer
from sendas.outbox.store import (
    Claim,
    ClaimedMessage,
    MarkRequest,
    RecordRequest,
    Rendered,
    TokenProviders,
)
from sendas.outbox.txqueue import TxQueue
from sendas.smtp import (
    Envelope,
    ReplyKind,
    SmtpEndpoint,
    SmtpSession,
    SubmitResult,
    pause_until,
)

log = logging.getLogger("sendas.outbox")
starts_log = logging.getLogger("sendas.outbox.starts")
"""At INFO: one line per paced submission, ``<lane> <time.time()>`` of the moment its MAIL
FROM was handed to the socket (what pacing promises on; tests read it)."""

RECONNECTS_BEFORE_PAUSE = 3
MIN_COMMIT_LEAD = 0.012
"""A paced message is marked ``sending`` (committed) this long at least before its slot,
so that the commit is over when the slot comes (a crash in between makes it ``unknown``):
a start missed by a slow commit (an fsync spike) could never be made up, since the next
gap may not be shorter."""
MAX_COMMIT_LEAD = 0.05


_Ahead = dict[int, "asyncio.Task[dict[int, Rendered | str]]"]
"""Form letters of a paced claim being rendered ahead of their slots, by message id."""


_Prefetched = tuple[Claim, dict[int, Rendered | str]]


class _LaneStop(Exception):
    """The lane cannot go on now (paused, needs attention, unreachable)."""


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class _LaneState:
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
    prefetch: asyncio.Task[_Prefetched | None] | None = None
    # That batch, already marked sending (in the commit that recorded the previous one).
    marked_ahead: tuple[Claim, list[ClaimedMessage]] | None = None
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
        self.cfg = config or OutboxConfig(smtp_timeout=ctx.settings.smtp_timeout)
        self.id = worker_id or new_worker_id()
        self._token_providers = token_providers
        self.on_start: Callable[[str, float], None] | None = None
        """Called with (lane, time.monotonic()) for each paced submission: the moment its
        MAIL FROM was handed to the socket."""
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._cooldown: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._held: set[int] = set()
        self._copies: set[asyncio.Task[None]] = set()
        self._copy_slots = asyncio.Semaphore(self.cfg.copy_concurrency)
        self._tx = TxQueue(ctx.db)
        self._renderer = Renderer(ctx.db.engine, self.cfg.render_processes)

    # --- control --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the submissions in flight, hand the lanes back, then return from run()."""
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for work now instead of at the next poll (e.g. right after an enqueue)."""
        self._wake.set()

    @property
    def lanes(self) -> list[str]:
        return list(self._lanes)

    async def run(self) -> None:
        self._tx.start()
        self._renderer.start()
        beat = asyncio.create_task(self._heartbeat(), name="sendas-heartbeat")
        log.info("outbox worker %s started", self.id)
        try:
            while not self._stopping.is_set():
                try:
                    await self._poll()
                except Exception:
                    log.exception("outbox poll failed; trying again")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.cfg.poll_interval)
        finally:
            self._stopping.set()
            await self._drain()
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await self._tx.close()
            await self._renderer.close()
            log.info("outbox worker %s stopped", self.id)

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

        def op(session: Session) -> list[str]:
            store.reap_expired(session, now)
            return store.acquire_lanes(session, owner, now, cfg, skip=skip, limit=limit)

        for name in await self._tx.run(op):
            if name not in self._lanes and not self._stopping.is_set():
                self._lanes[name] = asyncio.create_task(self._drive(name), name=f"lane {name}")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_seconds)
            until = utcnow() + timedelta(seconds=self.cfg.lease_seconds)
            op = partial(
                store.heartbeat, owner=self.id, lanes=list(self._lanes),
                message_ids=list(self._held), until=until,
            )  # fmt: skip
            try:
                await self._tx.run(op)
            except Exception:
                log.exception("renewing the leases failed")

    # --- one lane -------------------------------------------------------------------------

    async def _drive(self, lane: str) -> None:
        st = _LaneState(lane)
        held_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                if time.monotonic() - held_since > self.cfg.lane_hold_seconds:
                    # Hand the lane back for a moment so other workers get their turn.
                    self._cooldown[lane] = time.monotonic() + 2 * self.cfg.poll_interval
                    break
                claim, rendered = await self._next_claim(st)
                if claim is None:
                    break
                if not claim.messages:
                    continue
                st.delay_ms = claim.delay_ms
                ids = [m.id for m in claim.messages]
                self._held.update(ids)
                try:
                    if claim.delay_ms > 0:
                        await self._send_paced(st, claim)
                    else:
                        await self._send_pipelined(st, claim, rendered)
                finally:
                    leftover = [i for i in ids if i in self._held]
                    self._held.difference_update(ids)
                    if leftover:
                        await self._tx.run(
                            partial(store.release_messages, owner=self.id, ids=leftover,
                                    was_sending=False)
                        )  # fmt: skip
        except _LaneStop:
            pass
        except Exception:
            log.exception("lane %s stopped on an unexpected error", lane)
        finally:
            await self._drop_prefetch(st)
            if st.session is not None:
                await st.session.close()
            owner, floor = self.id, st.next_floor
            try:
                await self._tx.run(lambda s: store.release_lane(s, lane, owner, floor))
            except Exception:
                log.exception("could not hand back lane %s", lane)
            self._lanes.pop(lane, None)

    async def _next_claim(self, st: _LaneState) -> tuple[Claim | None, dict[int, Rendered | str]]:
        task, st.prefetch = st.prefetch, None
        if task is not None:
            got = await task
            return got if got is not None else (None, {})
        return await self._claim(st), {}

    async def _claim_ahead(self, st: _LaneState) -> _Prefetched | None:
        claim = await self._claim(st)
        if claim is None:
            return None
        self._held.update(m.id for m in claim.messages)
        return claim, await self._render(claim.messages) if claim.delay_ms == 0 else {}

    async def _drop_prefetch(self, st: _LaneState) -> None:
        """The lane stops: give back what was claimed ahead, and what was marked sending
        ahead (never submitted)."""
        marked, st.marked_ahead = st.marked_ahead, None
        if marked is not None:
            sending = [m.id for m in marked[1]]
            self._held.difference_update(sending)
            await self._tx.run(
                partial(store.release_messages, owner=self.id, ids=sending, was_sending=True)
            )
        task, st.prefetch = st.prefetch, None
        if task is None:
            return
        try:
            got = await task
        except Exception:
            log.exception("lane %s: claiming ahead failed", st.name)
            return  # the claim's lease runs out by itself
        if got is None:
            return
        ids = [m.id for m in got[0].messages]
        self._held.difference_update(ids)
        if ids:
            await self._tx.run(
                partial(store.release_messages, owner=self.id, ids=ids, was_sending=False)
            )

    async def _claim(self, st: _LaneState) -> Claim | None:
        cfg, owner, box, tokens = self.cfg, self.id, self.ctx.secrets, self._token_providers
        floor, lane, now, batch = st.next_floor, st.name, utcnow(), st.batch_limit(self.cfg)
        return await self._tx.run(
            lambda s: store.claim_batch(
                s, lane, owner, now, cfg, box=box, token_providers=tokens, not_before=floor,
                batch=batch,
            )
        )

    async def _ensure_session(self, st: _LaneState, endpoint: SmtpEndpoint) -> SmtpSession:
        session = st.session
        if session is not None and (not session.usable or endpoint != st.endpoint):
            await session.close()
            session = st.session = None
        if session is not None and time.monotonic() - st.last_used > self.cfg.idle_check_seconds:
            try:
                await session.noop()
            except TransportError:
                await session.close()
                session = st.session = None
        if session is None:
            session = SmtpSession(endpoint)
            try:
                await session.open()
            except TransportError as exc:
                await self._lane_failure(st, exc)
                raise _LaneStop from None
            st.session, st.endpoint = session, endpoint
            st.last_used = time.monotonic()
        return session

    async def _lane_failure(self, st: _LaneState, exc: TransportError) -> None:
        """Opening the connection failed: flag, pause or back off the lane."""
        lane, now = st.name, utcnow()
        reason = " - ".join(x for x in (exc.server_reply or str(exc), exc.hint) if x)
        kind = exc.kind if isinstance(exc, ReplyError) else None
        if isinstance(exc, AuthError | OAuthError) or kind == ReplyKind.AUTH:
            log.warning("lane %s: sign-in refused, the alias needs attention", lane)
            await self._tx.run(lambda s: store.lane_needs_attention(s, lane, reason, now))
            return
        until: datetime | None = None
        if kind in (ReplyKind.RATE_LIMIT, ReplyKind.QUOTA):
            until = pause_until(kind or "", exc.code or 0, exc.server_reply, now)
        if until is None:
            failures = self._failures.get(lane, 0) + 1
            self._failures[lane] = failures
            wait = backoff(failures, self.cfg.reconnect_base, self.cfg.reconnect_max)
            until = now + timedelta(seconds=wait)
            reason = f"cannot reach the server: {reason}"
        log.warning("lane %s paused until %s: %s", lane, until.isoformat(), reason)
        final_until = until
        await self._tx.run(lambda s: store.pause_lane(s, lane, final_until, reason))

    async def _render(self, messages: list[ClaimedMessage]) -> dict[int, Rendered | str]:
        """Render the form letters among ``messages`` (outside any write transaction), the
        ones due first (by slot) first."""
        todo = [m.render for m in messages if m.render is not None]
        if not todo:
            return {}
        slot = messages[0].slot
        due = time.monotonic() + ((slot - utcnow()).total_seconds() if slot is not None else 0.0)
        done = await self._renderer.render(todo, due)
        return {item.id: out for item, out in zip(todo, done, strict=True)}

    def _render_ahead(self, ahead: _Ahead, message: ClaimedMessage | None) -> None:
        """Start rendering a paced message's form letter, due at its slot (the renderer
        serves the earliest slots of all lanes first). Started one slot ahead, so that the
        load is spread over time and the slot finds the message ready."""
        if message is not None and message.render is not None and message.id not in ahead:
            ahead[message.id] = asyncio.create_task(self._render([message]))

    async def _mark_sending(
        self,
        messages: list[ClaimedMessage],
        ahead: _Ahead | None = None,
        rendered: dict[int, Rendered | str] | None = None,
    ) -> list[ClaimedMessage]:
        """Render what needs it (or take what was rendered ahead), then mark ``messages``
        sending; return those still ours, ready to submit."""
        wanted = {m.id for m in messages if m.render is not None}
        rendered = {i: r for i, r in (rendered or {}).items() if i in wanted}
        for message_id in wanted:
            task = (ahead or {}).get(message_id)
            if task is not None:
                rendered.update(await task)
        missing = [m for m in messages if m.render is not None and m.id not in rendered]
        rendered.update(await self._render(missing))
        good = {i: r for i, r in rendered.items() if isinstance(r, Rendered)}
        bad = {i: r for i, r in rendered.items() if isinstance(r, str)}
        ids = [m.id for m in messages if m.id not in bad]
        request = MarkRequest(self.id, ids, utcnow(), self.cfg.lease_seconds, good, bad)
        marked: list[int] = await self._tx.run_batched(store.mark_many, request)
        ours = set(marked)
        self._held.difference_update(m.id for m in messages if m.id not in ours)
        out = []
        for m in messages:
            if m.id in ours:
                done = good.get(m.id)
                out.append(m if done is None else replace(m, raw=done.raw, render=None))
        return out

    async def _record(
        self,
        st: _LaneState,
        claim: Claim,
        items: list[tuple[ClaimedMessage, SubmitResult | TransportError]],
    ) -> None:
        lane = st.name
        request = RecordRequest(self.id, lane, items, utcnow(), self.cfg, claim.copy_skip_reason)
        rec = await self._tx.run_batched(store.record_many, request)
        self._held.difference_update(m.id for m, _ in items)
        if rec.sent:
            self._failures.pop(lane, None)
            st.reconnects = 0
            if claim.imap is not None:
                raw = {m.id: m.raw for m, _ in items}
                for message_id in rec.sent:
                    self._start_copy(claim.imap, message_id, raw[message_id])
        if rec.needs_attention or rec.pause_until is not None:
            raise _LaneStop
        if rec.reconnect:
            if st.session is not None:
                await st.session.close()
            st.session = None
            st.reconnects += 1
            if st.reconnects >= RECONNECTS_BEFORE_PAUSE:
                st.reconnects = 0
                await self._lane_failure(st, _dropped())
                raise _LaneStop

    async def _send_pipelined(
        self, st: _LaneState, claim: Claim, rendered: dict[int, Rendered | str]
    ) -> None:
        session = await self._ensure_session(st, claim.endpoint)
        marked = st.marked_ahead
        if marked is not None and marked[0] is claim:
            st.marked_ahead = None
            batch = marked[1]
        else:
            batch = await self._mark_sending(claim.messages, rendered=rendered)
        if not batch:
            return
        if not self._stopping.is_set():
            # The next batch is claimed and rendered while this one is in flight, so that
            # the link does not idle between batches.
            st.prefetch = asyncio.create_task(self._claim_ahead(st))
        envelopes = [Envelope(m.envelope_from, m.recipients, m.raw) for m in batch]
        answers: list[SubmitResult | TransportError]
        began = time.monotonic()
        try:
            answers = await session.submit_many(envelopes)
        except TransportError as exc:
            answers = [exc] * len(batch)
        st.last_used = time.monotonic()
        items = list(zip(batch, answers, strict=True))
        if all(isinstance(a, SubmitResult) and a.delivered and not a.rejected for a in answers):
            st.note_batch(len(batch), st.last_used - began)
            await self._record_and_mark_ahead(st, claim, items)
        else:
            await self._record(st, claim, items)

    async def _record_and_mark_ahead(
        self,
        st: _LaneState,
        claim: Claim,
        items: list[tuple[ClaimedMessage, SubmitResult | TransportError]],
    ) -> None:
        """Every message of the batch went through: record it and mark the next batch
        (claimed and rendered meanwhile) sending in one commit, so the link waits for one
        commit between batches, not two. A batch with any refusal or error is recorded
        alone first: its answers may pause the lane before anything more is marked."""
        task = st.prefetch
        ahead = None
        if task is not None:
            await asyncio.wait({task})  # the link needs the next batch anyway
            if not task.cancelled() and task.exception() is None:
                ahead = task.result()
        if ahead is None or not ahead[0].messages or ahead[0].delay_ms > 0:
            await self._record(st, claim, items)
            return
        upcoming, rendered = ahead
        record = asyncio.ensure_future(self._record(st, claim, items))
        mark = asyncio.ensure_future(self._mark_sending(upcoming.messages, rendered=rendered))
        recorded, marked = await asyncio.gather(record, mark, return_exceptions=True)
        if not isinstance(marked, BaseException):
            st.marked_ahead = (upcoming, marked)  # _drop_prefetch gives it back if need be
        if isinstance(recorded, BaseException):
            raise recorded
        if isinstance(marked, BaseException):
            raise marked

    async def _send_paced(self, st: _LaneState, claim: Claim) -> None:
        ahead: _Ahead = {}
        try:
            await self._send_paced_rendered(st, claim, ahead)
        finally:
            for task in ahead.values():
                task.cancel()
            await asyncio.gather(*ahead.values(), return_exceptions=True)

    async def _send_paced_rendered(self, st: _LaneState, claim: Claim, ahead: _Ahead) -> None:
        delay = claim.delay_ms / 1000
        following = [*claim.messages[1:], None]
        for m, after in zip(claim.messages, following, strict=True):
            if self._stopping.is_set():
                return
            self._render_ahead(ahead, m)
            self._render_ahead(ahead, after)
            # Slots are planned from the previous planned slot (no drift). The commit that
            # marks the message sending is made a little ahead of the slot, so that its
            # latency does not delay the start; the start itself waits for the slot, and
            # for delay_ms (plus a hair) after the previous actual start.
            target = m.slot or utcnow()
            lead = min(max(MIN_COMMIT_LEAD, 4 * st.commit_lead), MAX_COMMIT_LEAD, delay / 2)
            if not await self._sleep_until(target - timedelta(seconds=lead)):
                return
            session = await self._ensure_session(st, claim.endpoint)
            began = time.monotonic()
            ready = await self._mark_sending([m], ahead)
            if not ready:
                # Paused, cancelled or taken meanwhile: the rest of this claim is likely
                # the same form letter. Give it back (see _drive) with its slots.
                await self._tx.run(
                    partial(store.unreserve, lane=st.name, owner=self.id,
                            next_send_at=st.next_floor)
                )  # fmt: skip
                return
            m = ready[0]
            took = time.monotonic() - began
            st.commit_lead = 0.8 * st.commit_lead + 0.2 * took
            start = time.monotonic() + (target - utcnow()).total_seconds()
            # The previous start may have been late: never start closer than delay_ms.
            gate = pacing.start_gate(start, previous_start=st.last_start_mono, delay=delay)
            envelope = Envelope(m.envelope_from, m.recipients, m.raw)
            answer: SubmitResult | TransportError
            try:
                (answer,) = await session.submit_many([envelope], start_gate=gate)
            except TransportError as exc:
                answer = exc
            if session.mail_sent_at is not None:
                self._started(st, session.mail_sent_at)
            st.last_used = time.monotonic()
            await self._record(st, claim, [(m, answer)])

    def _started(self, st: _LaneState, began: float) -> None:
        """A paced submission was handed to the socket by ``began`` (monotonic): the next
        one of the lane starts at least ``delay_ms`` after it."""
        ago = time.monotonic() - began
        st.last_start_mono = began
        st.last_start_wall = utcnow() - timedelta(seconds=ago)
        if self.on_start is not None:
            self.on_start(st.name, began)
        if starts_log.isEnabledFor(logging.INFO):
            starts_log.info("%s %.6f", st.name, time.time() - ago)

    async def _sleep_until(self, when: datetime) -> bool:
        """Sleep until ``when`` (wall clock); False if the worker is stopping."""
        delta = (when - utcnow()).total_seconds()
        if delta <= 0:
            return not self._stopping.is_set()
        try:
            await asyncio.wait_for(self._stopping.wait(), delta)
        except TimeoutError:
            return True
        return False

    # --- copy to Sent ---------------------------------------------------------------------

    def _start_copy(self, imap: ImapEndpoint, message_id: int, raw: bytes) -> None:
        task = asyncio.create_task(self._copy(imap, message_id, raw))
        self._copies.add(task)
        task.add_done_callback(self._copies.discard)

    async def _copy(self, imap: ImapEndpoint, message_id: int, raw: bytes) -> None:
        async with self._copy_slots:
            outcome = await append_to_sent(imap, raw)
        detail = outcome.reason or outcome.hint
        await self._tx.run(lambda s: store.record_sent_copy(s, message_id, outcome.status, detail))


def _dropped() -> TransportError:
    from sendas.errors import MailConnectionError

    return MailConnectionError(
        "the server keeps closing the connection", step="mail_from",
        hint="The server closed the connection repeatedly; sending pauses and tries again.",
    )  # fmt: skip


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
    import signal
    import sys

    # The database thread holds the GIL for up to the switch interval (5 ms by default),
    # which would delay a paced submission by as much; 1 ms keeps pacing tight.
    sys.setswitchinterval(0.001)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    await worker.run()
