"""A lane driver's writes around each submission: before it, form letters rendered (outside
any write transaction) and the messages marked ``sending`` with what was rendered; after
it, what the server answered recorded, and the lane stopped or its connection dropped when
the outcomes say so.

A mixin of :class:`~sendas.outbox.driver.LaneDriver` (its methods, not a layer between it
and the database): the window (:mod:`~sendas.outbox.window`) and paced sending
(:mod:`~sendas.outbox.paced`) call these on the driver, once per batch or message, and
:mod:`~sendas.outbox.driver` keeps the lane's claiming and its connection."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from sendas.db.models import utcnow
from sendas.errors import OutboundRefused, TransportError
from sendas.outbox.claims import Claim, ClaimedMessage, Rendered
from sendas.outbox.lane_failure import dropped, lane_failure
from sendas.outbox.late import RenderLate, defer_late
from sendas.outbox.marking import MarkRequest, mark_many
from sendas.outbox.paced import Ahead
from sendas.outbox.record import RecordRequest, record_many
from sendas.outbox.state import DriverContext, LaneState
from sendas.outbox.stops import LaneStop
from sendas.smtp import SubmitResult

log = logging.getLogger("sendas.outbox")
RECONNECTS_BEFORE_PAUSE = 3


class DriverWrites:
    """Render, mark sending, record: the part of a lane driver that writes messages."""

    ctx: DriverContext
    st: LaneState

    async def _fail_refused(self, claim: Claim, error: OutboundRefused) -> None:
        """The server's address is refused by the outbound policy (a setting, not a passing
        failure): the claimed messages not yet sent fail, each with the reason."""
        log.warning("lane %s: %s", self.st.name, error)
        left = [m for m in claim.messages if m.id in self.ctx.held]
        batch = await self.mark_sending(left)
        if batch:
            await self.record(claim, [(m, error) for m in batch])

    async def render(self, messages: list[ClaimedMessage]) -> dict[int, Rendered | str]:
        """Render the form letters among ``messages`` (outside any write transaction), the
        ones due first (by slot) first."""
        todo = [m.render for m in messages if m.render is not None]
        if not todo:
            return {}
        slot = messages[0].slot
        due = time.monotonic() + ((slot - utcnow()).total_seconds() if slot is not None else 0.0)
        done = await self.ctx.renderer.render(todo, due, self.st.name)
        return {item.id: out for item, out in zip(todo, done, strict=True)}

    async def mark_sending(
        self,
        messages: list[ClaimedMessage],
        ahead: Ahead | None = None,
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
        rendered.update(await self.render(missing))
        good = {i: r for i, r in rendered.items() if isinstance(r, Rendered)}
        bad = {i: r for i, r in rendered.items() if isinstance(r, str)}
        late = {i: str(r) for i, r in bad.items() if isinstance(r, RenderLate)}
        if late:  # out of time under load: retried later (they are no longer ours)
            bad = {i: r for i, r in bad.items() if i not in late}
            owner, now, cfg = self.ctx.owner, utcnow(), self.ctx.cfg
            await self.ctx.tx.run(lambda s: defer_late(s, owner, late, now, cfg))
        ids = [m.id for m in messages if m.id not in bad and m.id not in late]
        request = MarkRequest(self.ctx.owner, ids, utcnow(), self.ctx.cfg.lease_seconds, good, bad)
        marked: list[int] = await self.ctx.tx.run_batched(mark_many, request)
        ours = set(marked)
        self.ctx.held.difference_update(m.id for m in messages if m.id not in ours)
        out = []
        for m in messages:
            if m.id in ours:
                done = good.get(m.id)
                out.append(
                    m if done is None else replace(m, raw=done.raw, crlf=done.crlf, render=None)
                )
        return out

    async def record(
        self,
        claim: Claim,
        items: list[tuple[ClaimedMessage, SubmitResult | TransportError]],
    ) -> None:
        lane = self.st.name
        request = RecordRequest(
            self.ctx.owner, lane, items, utcnow(), self.ctx.cfg, claim.copy_skip_reason
        )
        rec = await self.ctx.tx.run_batched(record_many, request)
        self.ctx.held.difference_update(m.id for m, _ in items)
        if rec.sent:
            self.ctx.failures.pop(lane, None)
            self.st.reconnects = 0
            if claim.imap is not None:
                raw = {m.id: m.raw for m, _ in items}
                for message_id in rec.sent:
                    self.ctx.start_copy(
                        claim.imap, message_id, raw[message_id], lane, claim.endpoint.auth
                    )
        if rec.needs_attention or rec.pause_until is not None:
            raise LaneStop
        if rec.reconnect and self.st.session is not None:
            # The link broke: counted once, however many commits its outcomes take.
            await self.st.session.close()
            self.st.session = None
            self.st.reconnects += 1
            if self.st.reconnects >= RECONNECTS_BEFORE_PAUSE:
                self.st.reconnects = 0
                await lane_failure(self.ctx, lane, dropped())
                raise LaneStop
