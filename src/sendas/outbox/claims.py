"""Claims: the next messages of a lane this worker owns, with leases and pacing slots;
the form letters among them rendered outside the transaction (then marked ``sending``
right before submission, or given back: :mod:`sendas.outbox.marking`).

Every function takes a :class:`Session` inside a write transaction (SQLite: ``BEGIN
IMMEDIATE``, so one process claims at a time; PostgreSQL: ``FOR UPDATE SKIP LOCKED``) and
returns plain data, never ORM objects, because the worker uses the answers in another thread.

States: ``queued``/``retrying`` (a claim sets a lease, status unchanged) -> ``sending``
(committed immediately before the submission) -> ``sent`` | ``retrying`` | ``failed`` |
``unknown`` (see :mod:`sendas.outbox.record`). A claimed row still ``queued`` was never
submitted: once its lease runs out, any worker may claim it again.
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, bindparam, cast, or_, select, update
from sqlalchemy.orm import Session

from sendas.db.models import Alias, Campaign, SystemOutgoing
from sendas.db.packing import LetterPacked, Packed, pack_letter, unpack_letter
from sendas.endpoints import TokenProviders, alias_endpoint, imap_for, smtp_endpoint
from sendas.errors import SendasError, TemplateTimedOut
from sendas.imap.endpoint import ImapEndpoint
from sendas.net.policy import OutboundPolicy
from sendas.outbox.completion import complete_campaigns
from sendas.outbox.config import OutboxConfig
from sendas.outbox.counts import Moves
from sendas.outbox.lanes import lane_alias_id
from sendas.outbox.late import RenderLate
from sendas.outbox.outcomes import pending_recipients
from sendas.outbox.tables import (
    BODY,
    LANE,
    MSG,
    chunks,
    running_letters,
    update_ids,
    update_rows,
)
from sendas.sandbox import Limits
from sendas.secrets import SecretBox
from sendas.smtp import SmtpEndpoint
from sendas.smtp.wire import crlf_only
from sendas.statuses import READY, MessageStatus

HANDOVER_GUARD = timedelta(milliseconds=3)


@dataclass
class RenderInput:
    """What ``merge.render_message`` reads of a form letter's message (and sets: ``subject``,
    ``message_id``): plain data, so rendering runs outside the claiming transaction.

    The recipient's values and To arrive as the stored JSON text and are decoded where the
    letter is rendered (a render process), not by the worker that claims it."""

    id: int
    campaign_id: int | None
    to_addrs_json: str | None
    recipients: list[str]
    merge_fields_json: str | None
    subject: str = ""
    message_id: str = ""

    @property
    def to_addrs(self) -> list[str]:
        return list(json.loads(self.to_addrs_json or "null") or [])

    @property
    def merge_fields(self) -> dict[str, Any] | None:
        fields: dict[str, Any] | None = json.loads(self.merge_fields_json or "null")
        return fields


@dataclass(frozen=True)
class Rendered:
    raw: bytes = field(repr=False)
    subject: str
    message_id: str
    # ``raw`` as stored (sendas.db.packing), packed where it was rendered: off the worker.
    packed: Packed = field(repr=False)
    crlf: bool = False  # every line of ``raw`` ends with CRLF (checked as it was rendered)


@dataclass(frozen=True)
class ClaimedMessage:
    id: int
    envelope_from: str
    recipients: list[str] = field(repr=False)  # those still pending
    raw: bytes = field(repr=False)  # empty while ``render`` is pending
    attempts: int
    recipient_results: dict[str, Any] | None
    slot: datetime | None  # planned start of submission (paced lanes)
    render: RenderInput | None = None  # a form letter not rendered yet
    crlf: bool = False  # as :attr:`Rendered.crlf`: framing ``raw`` skips that check


@dataclass(frozen=True)
class Claim:
    lane: str
    delay_ms: int
    endpoint: SmtpEndpoint
    imap: ImapEndpoint | None
    copy_skip_reason: str | None  # why no copy to Sent is made, when none is
    messages: list[ClaimedMessage]
    # SMTP connections the lane may use at once (1 whenever it has a delay).
    max_connections: int = 1


# --- statements ----------------------------------------------------------------------------

_CLAIM_COLUMNS = [
    *(MSG.c[name] for name in (
        "id", "message_id", "recipients", "recipient_results", "attempts",
        "envelope_from", "campaign_id", "status",
    )),
    # As text: only a render process decodes them (see RenderInput).
    cast(MSG.c.to_addrs, Text).label("to_addrs"),
]  # fmt: skip
# The bodies (bytes, a form letter's values) are read beside the status row, never written.
_BODY_COLUMNS = [BODY.c.raw, cast(BODY.c.merge_fields, Text).label("merge_fields")]
_CLAIM_LANE = (
    select(LANE.c.owner, LANE.c.needs_attention, LANE.c.paused_until, LANE.c.next_send_at)
    .where(LANE.c.name == bindparam("lane"))
    .with_for_update()
)
_UPDATE_LANE = update(LANE).where(LANE.c.name == bindparam("_lane"))  # SET: the other keys


def _claim_statement(source: Any) -> Any:
    """A lane's next ready messages of one source (its single messages, or one form
    letter), in the order they are due: ``ix_messages_claim`` (status, lane, form letter,
    time) answers the filter and the order together."""
    return (
        select(*_CLAIM_COLUMNS, MSG.c.next_attempt_at, *_BODY_COLUMNS)
        .select_from(MSG.outerjoin(BODY, BODY.c.message_id == MSG.c.id))
        .where(
            MSG.c.status == bindparam("status"),
            MSG.c.lane == bindparam("lane"),
            source,
            MSG.c.next_attempt_at <= bindparam("now"),
            or_(MSG.c.lease_expires_at.is_(None), MSG.c.lease_expires_at < bindparam("now")),
        )
        .order_by(MSG.c.next_attempt_at, MSG.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=MSG)
    )


_CLAIM_SINGLES = _claim_statement(MSG.c.campaign_id.is_(None))
_CLAIM_OF_LETTER = _claim_statement(MSG.c.campaign_id == bindparam("letter"))
_RUNNING_LETTERS = running_letters(bindparam("alias"))

_ALIASES = select(Alias).where(Alias.id.in_(bindparam("ids", expanding=True)))
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


# --- rendering -----------------------------------------------------------------------------


def letter_dictionaries(session: Session) -> Callable[[int | None], bytes]:
    """Each form letter's body dictionary (``Campaign.body_dictionary``), made once per
    letter for the session's caller."""
    known: dict[int | None, bytes] = {}

    def dictionary(campaign_id: int | None) -> bytes:
        if campaign_id not in known:
            known[campaign_id] = session.get_one(Campaign, campaign_id).body_dictionary
        return known[campaign_id]

    return dictionary


def _render(session: Session, message: RenderInput, limits: Limits | None) -> tuple[bytes, Packed]:
    """A form letter's recipient: rendered and composed by ``sendas.merge``, then packed
    with its letter's dictionary."""
    merge = importlib.import_module("sendas.merge")
    render: Callable[[Session, RenderInput, Limits | None], bytes] = merge.render_message
    raw = render(session, message, limits)
    dictionary: Callable[[Session, int | None], bytes] = merge.body_dictionary
    return raw, pack_letter(raw, dictionary(session, message.campaign_id))


def render_many(
    session: Session, batches: list[list[RenderInput]], limits: Limits | None = None
) -> list[list[Rendered | str]]:
    """Render form letters (a read session: nothing is written here) within ``limits`` per
    recipient. Per message, the bytes to submit or why it cannot be rendered. The raw
    message is stored by :func:`mark_many` in the same commit that marks it ``sending``."""
    out: list[list[Rendered | str]] = []
    for batch in batches:
        done: list[Rendered | str] = []
        for item in batch:
            try:
                raw, packed = _render(session, item, limits)
            except TemplateTimedOut as exc:  # load, not the template: retried (outbox.late)
                done.append(RenderLate(f"The form letter could not be rendered in time: {exc}"))
                continue
            except (SendasError, ImportError, ValueError) as exc:
                done.append(f"The form letter could not be rendered for this recipient: {exc}")
                continue
            done.append(Rendered(raw, item.subject, item.message_id, packed, crlf_only(raw)))
        out.append(done)
    return out


# --- claiming ------------------------------------------------------------------------------


def _lane_source(session: Session, lane: str) -> tuple[Alias | None, int, int] | None:
    """The lane's alias (None: the database settings), delay and connections at once, or
    None if it cannot send."""
    alias_id = lane_alias_id(lane)
    if alias_id is None:
        system = session.get(SystemOutgoing, 1)
        if system is None or not system.smtp_host:
            return None
        return None, system.delay_ms, system.max_connections
    alias = session.get(Alias, alias_id)
    if alias is None:
        return None
    if alias.needs_reauth:
        session.execute(_UPDATE_LANE, {"_lane": lane, "needs_attention": True})
        return None
    return alias, alias.delay_ms, alias.max_connections


def _ready_rows(session: Session, lane: str, now: datetime, limit: int) -> list[Any]:
    """Up to ``limit`` ready messages of the lane, queued ones first, each status in the
    order they are due: the single messages and those of each running form letter are
    read apart (so that a paused letter's messages are never read, however many) and
    merged."""
    alias_id = lane_alias_id(lane)
    letters = (
        [] if alias_id is None else list(session.scalars(_RUNNING_LETTERS, {"alias": alias_id}))
    )
    rows: list[Any] = []
    for status in READY:
        want = limit - len(rows)
        if want <= 0:
            break
        params = {"status": status, "lane": lane, "now": now, "limit": want}
        sources = [session.execute(_CLAIM_SINGLES, params).all()]
        sources += [session.execute(_CLAIM_OF_LETTER, {**params, "letter": letter}).all()
                    for letter in letters]  # fmt: skip
        merged = heapq.merge(*sources, key=lambda r: (r.next_attempt_at, r.id))
        rows.extend(itertools.islice(merged, want))
    return rows


@dataclass
class _Plan:
    """Claimed rows turned into messages with slots, and the few rows that need more than
    the lease (a Message-ID to remember, or every recipient already settled)."""

    slot: datetime
    delay_ms: int
    dictionary: Callable[[int | None], bytes]  # a form letter's (letter_dictionaries)
    claimed: list[ClaimedMessage] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    moves: Moves = field(default_factory=Moves)

    def add(self, m: Any) -> None:
        render: RenderInput | None = None
        change: dict[str, Any] = {"id": m.id}
        raw: bytes | None = m.raw
        if isinstance(raw, LetterPacked):  # a form letter's, sent before: read it again
            raw = unpack_letter(raw, self.dictionary(m.campaign_id))
        if raw is None:
            # Rendered after this transaction (render_many), stored when marked sending.
            render = RenderInput(m.id, m.campaign_id, m.to_addrs,
                                 list(m.recipients), m.merge_fields)  # fmt: skip
        elif not m.message_id:
            found = _MESSAGE_ID.search(raw)
            change["message_id"] = found.group(1).decode("ascii", "replace") if found else ""
        pending = pending_recipients(list(m.recipients), m.recipient_results)
        if not pending:  # every recipient already has a final result
            results = (m.recipient_results or {}).values()
            sent = any(v.get("status") == MessageStatus.SENT for v in results)
            status = MessageStatus.SENT if sent else MessageStatus.FAILED
            self.changes.append({**change, "status": status})
            self.moves.move(m.campaign_id, m.status, status)
            return
        if len(change) > 1:
            self.changes.append(change)
        paced = self.delay_ms > 0
        self.claimed.append(
            ClaimedMessage(
                id=m.id, envelope_from=m.envelope_from, recipients=pending, raw=raw or b"",
                attempts=m.attempts, recipient_results=m.recipient_results,
                slot=self.slot if paced else None, render=render,
            )
        )  # fmt: skip
        if paced:
            self.slot = self.slot + timedelta(milliseconds=self.delay_ms)


def claim_batch(
    session: Session,
    lane: str,
    owner: str,
    now: datetime,
    cfg: OutboxConfig,
    *,
    box: SecretBox,
    token_providers: TokenProviders | None,
    not_before: datetime | None,
    outbound: OutboundPolicy,
    batch: int | None = None,
) -> Claim | None:
    """Claim the next messages of a lane this worker owns, reserving their pacing slots.
    ``batch`` caps a lane without delay (default ``cfg.batch_size``).

    Returns ``None`` when the lane is no longer ours, is paused, or has nothing ready.
    """
    # The lane row is read and written with Core statements: an ORM object changed here
    # would be flushed by the next claim's first query, once per lane (500 lanes claim in
    # one transaction). The statements are built once, with parameters.
    row = session.execute(_CLAIM_LANE, {"lane": lane}).first()
    if row is None or row.owner != owner or row.needs_attention:
        return None
    if row.paused_until is not None and row.paused_until > now:
        return None
    source = _lane_source(session, lane)
    if source is None:
        return None
    alias, delay_ms, connections = source
    # With a delay one connection keeps the exact pacing; without, up to the setting's cap.
    connections = 1 if delay_ms > 0 else max(1, min(connections or 1, cfg.max_connections))
    if delay_ms > 0:
        limit = max(1, min(cfg.max_paced_batch, int(cfg.paced_window_seconds * 1000 // delay_ms)))
    else:
        limit = min(batch or cfg.batch_size, cfg.batch_size)
    rows = _ready_rows(session, lane, now, limit)
    if not rows:
        return None

    lease_until = now + timedelta(seconds=cfg.lease_seconds)
    reserved = row.next_send_at
    if not_before is None and reserved is not None:
        # Taking over from another worker: its last start reached the wire a little after
        # it was stamped, so keep a hair more than the delay (no drift within one worker).
        reserved += HANDOVER_GUARD
    start = max(x for x in (now, reserved, not_before) if x is not None)
    plan = _Plan(start, delay_ms, letter_dictionaries(session))
    for m in rows:
        plan.add(m)
    update_rows(session, plan.changes)
    settled = plan.moves.campaigns()
    plan.moves.apply(session, now)
    complete_campaigns(session, settled, now)
    claimed = plan.claimed
    update_ids(session, [m.id for m in claimed], lease_owner=owner, lease_expires_at=lease_until)
    lane_values: dict[str, Any] = {"_lane": lane, "owner_expires_at": lease_until}
    if delay_ms > 0 and claimed:
        lane_values["next_send_at"] = plan.slot  # one delay after the last reserved slot
    session.execute(_UPDATE_LANE, lane_values)
    if not claimed:
        return Claim(lane, delay_ms, _placeholder_endpoint(), None, None, [], connections)

    timeout = cfg.smtp_timeout
    if alias is not None:
        endpoint = alias_endpoint(alias, box, timeout, token_providers, outbound)
        imap, skip_reason = imap_for(alias, box, timeout, outbound, token_providers)
    else:
        system = session.get_one(SystemOutgoing, 1)
        # The database outgoing settings (admin-only) are exempt from the outbound policy.
        endpoint = smtp_endpoint(system, box, timeout=timeout, outbound=None)
        imap, skip_reason = None, "automated mail has no Sent folder"
    return Claim(lane, delay_ms, endpoint, imap, skip_reason, claimed, connections)


@dataclass(frozen=True)
class ClaimRequest:
    """The arguments of :func:`claim_batch` for one lane (see :func:`claim_many`)."""

    lane: str
    owner: str
    now: datetime
    cfg: OutboxConfig
    box: SecretBox = field(repr=False)
    token_providers: TokenProviders | None
    not_before: datetime | None
    outbound: OutboundPolicy
    batch: int | None = None


def claim_many(session: Session, requests: list[ClaimRequest]) -> list[Claim | None]:
    """The claims of many lanes in one transaction (a worker taking 500 lanes claims them
    together): their aliases are read in one query per 500 first, so that each claim finds
    its own in the session rather than reading it alone."""
    ids = sorted({i for r in requests if (i := lane_alias_id(r.lane)) is not None})
    # Held here: the session keeps only the objects someone refers to.
    aliases = [
        alias for chunk in chunks(ids) for alias in session.scalars(_ALIASES, {"ids": chunk})
    ]
    claims = [
        claim_batch(session, r.lane, r.owner, r.now, r.cfg, box=r.box,
                    token_providers=r.token_providers, not_before=r.not_before,
                    outbound=r.outbound, batch=r.batch)
        for r in requests
    ]  # fmt: skip
    del aliases
    return claims


def _placeholder_endpoint() -> SmtpEndpoint:
    return SmtpEndpoint(host="invalid", port=25, tls="none")
