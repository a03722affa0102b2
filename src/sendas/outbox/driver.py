"""One lane driven by one worker: its SMTP connection, claims (the next one claimed and
rendered ahead), a sliding window of pipelined messages when the alias has no delay
(:mod:`~sendas.outbox.window`; extra connections: :mod:`~sendas.outbox.pool`), paced
single submissions otherwise (:mod:`~sendas.outbox.paced`), and recording what the server
answered.

Slots are reserved in the lane's row when claiming (``next_send_at``), planned from the
previous planned start (no drift), and never earlier than ``delay_ms`` after the previous
actual start. Form letters are rendered after the claim, away from the write transaction,
and stored in the commit that marks them ``sending``.

This module holds the lane's claiming, its turn and its connection; rendering, marking
sending and recording are the mixin :class:`~sendas.outbox.driver_writes.DriverWrites`,
and what a failed connection does to the lane is :mod:`~sendas.outbox.lane_failure`
(split so that each stays small; the driver is still one object, no layer in between).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from sendas.db.models import utcnow
from sendas.errors import OutboundRefused, TransportError
from sendas.outbox import pool
from sendas.outbox.claims import Claim, ClaimRequest, Rendered, claim_many
from sendas.outbox.driver_writes import RECONNECTS_BEFORE_PAUSE, DriverWrites
from sendas.outbox.lane_failure import lane_failure, reauth_reason
from sendas.outbox.lanes import release_lane
from sendas.outbox.marking import release_messages
from sendas.outbox.paced import send_paced
from sendas.outbox.state import DriverContext, LaneState, Prefetched
from sendas.outbox.stops import ExtraGone, LaneStop, Refused
from sendas.outbox.window import Window
from sendas.smtp import SmtpEndpoint, SmtpSession

__all__ = ["RECONNECTS_BEFORE_PAUSE", "LaneDriver", "reauth_reason"]

log = logging.getLogger("sendas.outbox")


class LaneDriver(DriverWrites):
    """Drives one lane for its worker; :meth:`run` returns when the lane is handed back.

    A lane without delay whose alias allows ``max_connections`` above 1 gets that many
    connections, like a pool: this driver's own, and one more driver per extra connection
    (:func:`~sendas.outbox.pool.run_extra`), each claiming, marking and recording its own
    messages under the same lane lease. With a delay only this driver's connection sends
    (exact pacing)."""

    def __init__(
        self, ctx: DriverContext, lane: str, *, pool: LaneDriver | None = None, index: int = 0
    ) -> None:
        self.ctx = ctx
        self.st = LaneState(lane)
        self.index = index  # 0: the lane's first connection, which owns the lane
        # Set when the lane is done (nothing ready, a stop, handed back): extras finish.
        self.lane_over: asyncio.Event = pool.lane_over if pool is not None else asyncio.Event()
        self.pool = pool  # the lane's first driver (None: this is it)
        self.extras: dict[int, asyncio.Task[None]] = {}
        self.pool_limit: int | None = None  # fewer connections than allowed: the server said so
        # The worker asks it to hand the lane back at the next claim (beyond its share).
        self.hand_back = False
        self.held_since = time.monotonic()  # when this driver took the lane (run)

    async def run(self) -> bool:
        """Drive the lane until it has nothing ready, must stop, or was held long enough;
        then hand it back. True if handed back so that other workers get their turn."""
        lane = self.st.name
        self.held_since = time.monotonic()
        turn_over = False
        try:
            while not self.ctx.stopping.is_set() and not self.lane_over.is_set():
                if self.turning_over():
                    turn_over = True
                    break
                claim, rendered = await self.next_claim()
                if claim is None:
                    # Nothing left to claim, perhaps because the extras hold it: they send
                    # what they claimed before the lane ends (ending it now would make them
                    # give it back, and the lane be taken and connected again for it).
                    await self._extras_finish()
                    break
                if not claim.messages:
                    continue
                self.st.delay_ms = claim.delay_ms
                pool.grow(self, claim)
                await self.send_claim(claim, rendered, self._accept())
        except LaneStop:
            pass
        except Exception:
            log.exception("lane %s stopped on an unexpected error", lane)
        finally:
            self.lane_over.set()
            await self.close()
            await self._extras_finish()  # they finish the windows they hold first
            owner, floor = self.ctx.owner, self.st.next_floor
            try:
                await self.ctx.tx.run(lambda s: release_lane(s, lane, owner, floor))
            except Exception:
                log.exception("could not hand back lane %s", lane)
        return turn_over

    def turning_over(self) -> bool:
        """Hand the lane back now: held long enough, or asked to (other workers' turn).
        The extra connections of a pool ask the lane's first driver."""
        if self.pool is not None:
            return self.pool.turning_over()
        held = time.monotonic() - self.held_since
        return self.hand_back or held > self.ctx.cfg.lane_hold_seconds

    async def _extras_finish(self) -> None:
        if self.extras:
            await asyncio.gather(*self.extras.values(), return_exceptions=True)

    def _accept(self) -> Callable[[Claim], bool]:
        """Whether the lane's first connection goes on with a claim in its window: no delay,
        and not held past its turn (the pool grows with the claim's max_connections)."""

        def accept(claim: Claim) -> bool:
            if self.turning_over():
                return False
            pool.grow(self, claim)
            return pool.fits(self, claim)

        return accept

    async def send_claim(
        self,
        claim: Claim,
        rendered: dict[int, Rendered | str],
        accept: Callable[[Claim], bool] | None = None,
    ) -> None:
        """Send a claim: paced one at a time with a delay, else through a sliding window
        that goes on with the lane's next claims while ``accept`` says so."""
        ids = [m.id for m in claim.messages]
        self.ctx.held.update(ids)
        try:
            if claim.delay_ms > 0:
                await send_paced(self, claim)
            else:
                session = await self.ensure_session(claim.endpoint)
                more = accept or partial(pool.fits, self)
                await Window(self, session).run(claim, rendered, more)
        except Refused as refused:
            await self._fail_refused(claim, refused.error)
        finally:
            await self.give_back(ids)

    async def give_back(self, ids: list[int]) -> None:
        """Release those of ``ids`` still held (claimed, never marked sending)."""
        leftover = [i for i in ids if i in self.ctx.held]
        self.ctx.held.difference_update(ids)
        if leftover:
            await self.ctx.tx.run(
                partial(release_messages, owner=self.ctx.owner, ids=leftover, was_sending=False)
            )

    async def close(self) -> None:
        await self._drop_prefetch()
        if self.st.session is not None:
            await self.st.session.close()

    async def next_claim(self) -> tuple[Claim | None, dict[int, Rendered | str]]:
        task, self.st.prefetch = self.st.prefetch, None
        if task is not None:
            got = await task
            return got if got is not None else (None, {})
        return await self._claim(), {}

    async def claim_ahead(self) -> Prefetched | None:
        claim = await self._claim()
        if claim is None:
            return None
        ids = [m.id for m in claim.messages]
        self.ctx.held.update(ids)
        if claim.delay_ms > 0:
            return claim, {}
        try:
            return claim, await self.render(claim.messages)
        except BaseException:
            # Held ids are renewed by the heartbeat: give them back, or they would stay
            # claimed for as long as this worker lives.
            self.ctx.held.difference_update(ids)
            await asyncio.shield(
                self.ctx.tx.run(
                    partial(release_messages, owner=self.ctx.owner, ids=ids, was_sending=False)
                )
            )
            raise

    async def _drop_prefetch(self) -> None:
        """The lane stops: give back what was claimed ahead."""
        task, self.st.prefetch = self.st.prefetch, None
        if task is None:
            return
        try:
            got = await task
        except Exception:
            log.exception("lane %s: claiming ahead failed", self.st.name)
            return  # the claim's lease runs out by itself
        if got is None:
            return
        ids = [m.id for m in got[0].messages]
        self.ctx.held.difference_update(ids)
        if ids:
            await self.ctx.tx.run(
                partial(release_messages, owner=self.ctx.owner, ids=ids, was_sending=False)
            )

    async def _claim(self) -> Claim | None:
        """Claimed with the other lanes claiming at the same moment (one query reads
        their aliases)."""
        ctx, st = self.ctx, self.st
        request = ClaimRequest(
            st.name, ctx.owner, utcnow(), ctx.cfg, ctx.secrets, ctx.token_providers,
            st.next_floor, ctx.outbound, st.batch_limit(ctx.cfg),
        )  # fmt: skip
        claim: Claim | None = await ctx.tx.run_batched(claim_many, request)
        return claim

    async def ensure_session(self, endpoint: SmtpEndpoint) -> SmtpSession:
        session = self.st.session
        if session is not None and (not session.usable or endpoint != self.st.endpoint):
            await session.close()
            session = self.st.session = None
        if (
            session is not None
            and time.monotonic() - self.st.last_used > self.ctx.cfg.idle_check_seconds
        ):
            try:
                await self._unless_stopping(session, session.noop())
            except TransportError:
                await session.close()
                session = self.st.session = None
        if session is None:
            session = SmtpSession(endpoint)
            try:
                await self._unless_stopping(session, session.open())
            except OutboundRefused as exc:
                raise Refused(exc) from None
            except TransportError as exc:
                if self.pool is not None:
                    pool.shrink(self, exc)
                    raise ExtraGone from None
                await lane_failure(self.ctx, self.st.name, exc, endpoint)
                raise LaneStop from None
            self.st.session, self.st.endpoint = session, endpoint
            self.st.last_used = time.monotonic()
        return session

    async def _unless_stopping(self, session: SmtpSession, step: Awaitable[object]) -> None:
        """Await a connection step (open, NOOP), given up when the worker stops: nothing is
        submitted yet, and a silent server would hold the stop for the whole SMTP timeout."""
        work = asyncio.ensure_future(step)
        stop = asyncio.ensure_future(self.ctx.stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the lane task itself is cancelled
            work.cancel()
            raise
        finally:
            stop.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            session.abort()  # a reply may still be due: the stream is out of step
            raise LaneStop
        work.result()
