"""The outbox's database side: lanes, claims with leases, slots, outcomes, recovery.

Every function takes a :class:`Session` inside a write transaction (SQLite: ``BEGIN
IMMEDIATE``, so one process claims at a time; PostgreSQL: ``FOR UPDATE SKIP LOCKED``) and
returns plain data, never ORM objects, because the worker uses the answers in another thread.

States: ``queued``/``retrying`` (a claim sets a lease, status unchanged) -> ``sending``
(committed immediately before the submission) -> ``sent`` | ``retrying`` | ``failed`` |
``unknown``. A ``sending`` row whose lease ran out belonged to a worker that died
mid-submission: it becomes ``unknown`` and is never resent by itself. A claimed row still
``queued`` was never submitted: once its lease runs out, any worker may claim it again.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, Table, bindparam, cast, exists, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sendas.db.models import Alias, Campaign, ImapAccount, Lane, Message, SystemOutgoing
from sendas.errors import SendasError, TransportError
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.providers import files_own_sent_copy
from sendas.outbox.config import OutboxConfig
from sendas.outbox.outcomes import Outcome, interpret, pending_recipients
from sendas.secrets import SecretBox
from sendas.services.endpoints import imap_endpoint, smtp_endpoint
from sendas.smtp import SmtpEndpoint, SubmitResult, TokenProvider

log = logging.getLogger("sendas.outbox")

READY = ("queued", "retrying")
HANDOVER_GUARD = timedelta(milliseconds=3)
SYSTEM_LANE = "system"
ALIAS_LANE_PREFIX = "alias:"

TokenProviders = Callable[[int], TokenProvider]
"""alias id -> token provider, for aliases that sign in with Google or Microsoft."""


def alias_lane(alias_id: int) -> str:
    return f"{ALIAS_LANE_PREFIX}{alias_id}"


def lane_alias_id(lane: str) -> int | None:
    return int(lane[len(ALIAS_LANE_PREFIX) :]) if lane.startswith(ALIAS_LANE_PREFIX) else None


@dataclass
class RenderInput:
    """What ``merge.render_message`` reads of a form letter's message (and sets: ``subject``,
    ``message_id``): plain data, so rendering runs outside the claiming transaction."""

    id: int
    campaign_id: int | None
    to_addrs: list[str]
    recipients: list[str]
    merge_fields: dict[str, Any] | None
    subject: str = ""
    message_id: str = ""


@dataclass(frozen=True)
class Rendered:
    raw: bytes = field(repr=False)
    subject: str
    message_id: str


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


@dataclass(frozen=True)
class Claim:
    lane: str
    delay_ms: int
    endpoint: SmtpEndpoint
    imap: ImapEndpoint | None
    copy_skip_reason: str | None  # why no copy to Sent is made, when none is
    messages: list[ClaimedMessage]


@dataclass
class Recorded:
    """What the worker must do after outcomes were stored."""

    sent: list[int] = field(default_factory=list)
    pause_until: datetime | None = None
    needs_attention: bool = False
    reconnect: bool = False


# --- lanes ---------------------------------------------------------------------------------


def _insert_lanes(session: Session, names: Sequence[str]) -> None:
    if not names:
        return
    rows = [{"name": n, "needs_attention": False} for n in names]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(Lane).values(rows).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(Lane).values(rows).on_conflict_do_nothing())


def _ready_exists(lane_expr: Any, now: datetime) -> Any:
    """Some message of the lane can be claimed now (one index seek per status); messages
    of a paused form letter do not count, or their lanes would be taken and handed back
    at every poll."""
    return or_(
        *(
            exists().where(
                Message.status == status,
                Message.lane == lane_expr,
                Message.next_attempt_at <= now,
                _running_campaign(),
            )
            for status in READY
        )
    )


def acquire_lanes(
    session: Session, owner: str, now: datetime, cfg: OutboxConfig, *, skip: set[str], limit: int
) -> list[str]:
    """Take ownership of up to ``limit`` lanes that have work and are free; return them."""
    if limit <= 0:
        return []
    lane_expr = literal(ALIAS_LANE_PREFIX) + cast(Alias.id, String)
    alias_ids = session.scalars(
        select(Alias.id).where(Alias.needs_reauth.is_(False), _ready_exists(lane_expr, now))
    ).all()
    names = [alias_lane(i) for i in alias_ids]
    system = session.get(SystemOutgoing, 1)
    configured = system is not None and system.smtp_host and system.from_address
    if configured and session.scalar(select(_ready_exists(literal(SYSTEM_LANE), now))):
        names.append(SYSTEM_LANE)
    names = [n for n in names if n not in skip]
    if not names:
        return []
    known = set(session.scalars(select(Lane.name).where(Lane.name.in_(names))))
    _insert_lanes(session, [n for n in names if n not in known])
    free = or_(Lane.owner.is_(None), Lane.owner_expires_at < now, Lane.owner == owner)
    not_paused = or_(Lane.paused_until.is_(None), Lane.paused_until <= now)
    lanes = session.scalars(
        select(Lane)
        .where(Lane.name.in_(names), free, not_paused)
        .order_by(Lane.next_send_at.is_not(None), Lane.next_send_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    taken = []
    for lane in lanes:
        lane.owner = owner
        lane.owner_expires_at = now + timedelta(seconds=cfg.lease_seconds)
        # The pause is over, or the owner fixed the alias (acquired only if not needs_reauth).
        lane.paused_until = None
        lane.paused_reason = None
        lane.needs_attention = False
        taken.append(lane.name)
    return taken


def release_lane(session: Session, lane: str, owner: str, next_send_at: datetime | None) -> None:
    """Hand the lane back; ``next_send_at`` (if later) keeps pacing for the next worker."""
    row = session.get(Lane, lane, with_for_update=True)
    if row is None or row.owner != owner:
        return
    row.owner = None
    row.owner_expires_at = None
    if next_send_at is not None and (row.next_send_at is None or next_send_at > row.next_send_at):
        row.next_send_at = next_send_at


def unreserve(session: Session, lane: str, owner: str, next_send_at: datetime | None) -> None:
    """A paced claim ends early (its form letter was paused): drop the slots it reserved,
    keeping only the delay after the last actual start."""
    row = session.get(Lane, lane, with_for_update=True)
    if row is not None and row.owner == owner:
        row.next_send_at = next_send_at


def pause_lane(session: Session, lane: str, until: datetime, reason: str) -> None:
    row = session.get(Lane, lane, with_for_update=True)
    if row is None:
        _insert_lanes(session, [lane])
        row = session.get_one(Lane, lane)
    if row.paused_until is None or until > row.paused_until:
        row.paused_until = until
    row.paused_reason = reason


def lane_needs_attention(session: Session, lane: str, reason: str, now: datetime) -> None:
    """Authentication was refused: flag the alias and pause its lane until it is fixed.

    The database's own settings have no owner to sign in again: that lane retries after a
    pause instead (an admin fixing the settings is picked up then)."""
    row = session.get(Lane, lane, with_for_update=True)
    if row is None:
        _insert_lanes(session, [lane])
        row = session.get_one(Lane, lane)
    row.needs_attention = True
    row.paused_reason = reason
    alias_id = lane_alias_id(lane)
    if alias_id is not None:
        alias = session.get(Alias, alias_id)
        if alias is not None:
            alias.needs_reauth = True
    else:
        row.paused_until = now + timedelta(minutes=5)


def heartbeat(
    session: Session, owner: str, lanes: Sequence[str], message_ids: Sequence[int], until: datetime
) -> None:
    """Renew this worker's claims (its lanes and the messages it holds)."""
    if lanes:
        session.execute(
            update(Lane)
            .where(Lane.owner == owner, Lane.name.in_(list(lanes)))
            .values(owner_expires_at=until)
        )
    ids = list(message_ids)
    for start in range(0, len(ids), 500):
        session.execute(
            update(Message)
            .where(Message.id.in_(ids[start : start + 500]), Message.lease_owner == owner)
            .values(lease_expires_at=until)
        )


REAPED_HINT = (
    "The worker stopped while this message was being submitted, so the server may have "
    "accepted it. Check the recipient's mailbox or your Sent folder, then choose 'send again' "
    "or 'mark as sent'."
)


def reap_expired(session: Session, now: datetime) -> int:
    """Messages caught mid-submission by a worker that died become ``unknown``."""
    rows = session.scalars(
        select(Message)
        .where(Message.status == "sending", Message.lease_expires_at < now)
        .limit(1000)
        .with_for_update(skip_locked=True)
    ).all()
    for m in rows:
        m.status = "unknown"
        m.error_step = m.error_step or "data"
        m.server_reply = m.server_reply or "no answer recorded: the worker stopped"
        m.hint = REAPED_HINT
    if rows:
        log.warning("%d message(s) caught mid-submission became unknown", len(rows))
    return len(rows)


# --- endpoints -----------------------------------------------------------------------------


def _no_token_provider(alias_id: int) -> TokenProvider:
    async def provider(force_refresh: bool) -> str:
        from sendas.errors import ReauthRequired

        raise ReauthRequired(
            "no sign-in token is available for this alias",
            step="auth",
            hint="Sign in again with Google or Microsoft for this alias.",
        )

    return provider


def alias_endpoint(
    alias: Alias, box: SecretBox, timeout: float, token_providers: TokenProviders | None
) -> SmtpEndpoint:
    provider = None
    if alias.auth != "password":
        provider = (token_providers or _no_token_provider)(alias.id)
    return smtp_endpoint(alias, box, timeout=timeout, token_provider=provider)


def system_endpoint(row: SystemOutgoing, box: SecretBox, timeout: float) -> SmtpEndpoint:
    return smtp_endpoint(row, box, timeout=timeout)


def _imap_for(
    alias: Alias, box: SecretBox, timeout: float
) -> tuple[ImapEndpoint | None, str | None]:
    if files_own_sent_copy(alias.smtp_host, alias.auth):
        return None, "the provider files its own copy in Sent"
    account: ImapAccount | None = alias.imap_account
    if account is None:
        return None, "the alias has no IMAP account"
    if not account.password_enc:
        return None, "the IMAP account has no password"
    try:
        return imap_endpoint(account, box, timeout=timeout), None
    except ValueError as exc:
        return None, f"the IMAP account cannot be used: {exc}"


# --- claims --------------------------------------------------------------------------------

# The claim, mark and record paths run for every batch of every lane: they use Core
# statements on the tables, which cost a fraction of the ORM's statement handling.
_MSG: Table = Message.metadata.tables[Message.__tablename__]
_CAMPAIGN: Table = Campaign.metadata.tables[Campaign.__tablename__]
_LANE: Table = Lane.metadata.tables[Lane.__tablename__]
_CLAIM_COLUMNS = [_MSG.c[name] for name in (
    "id", "raw", "message_id", "recipients", "recipient_results", "attempts",
    "envelope_from", "campaign_id", "to_addrs", "merge_fields",
)]  # fmt: skip
_BY_ID = update(_MSG).where(_MSG.c.id == bindparam("_id"))  # SET: the other keys
_BY_IDS = update(_MSG).where(_MSG.c.id.in_(bindparam("ids", expanding=True)))


def _update_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE messages by ``id``: one executemany per set of columns changed."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    for group in groups.values():
        session.execute(
            _BY_ID, [{("_id" if k == "id" else k): v for k, v in row.items()} for row in group]
        )


CHUNK = 500


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    return [list(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK)]


def _update_ids(session: Session, ids: Sequence[int], **values: Any) -> None:
    """UPDATE messages SET ``values`` WHERE id IN ``ids`` (500 at a time)."""
    for chunk in _chunks(ids):
        session.execute(_BY_IDS, {"ids": chunk, **values})


def _running_campaign() -> Any:
    """The message is not part of a form letter, or its form letter is running (Core)."""
    return or_(
        _MSG.c.campaign_id.is_(None),
        exists().where(_CAMPAIGN.c.id == _MSG.c.campaign_id, _CAMPAIGN.c.status == "running"),
    )


_CLAIM_LANE = (
    select(_LANE.c.owner, _LANE.c.needs_attention, _LANE.c.paused_until, _LANE.c.next_send_at)
    .where(_LANE.c.name == bindparam("lane"))
    .with_for_update()
)
_UPDATE_LANE = update(_LANE).where(_LANE.c.name == bindparam("_lane"))  # SET: the other keys
_CLAIM_MESSAGES = (
    select(*_CLAIM_COLUMNS)
    .where(
        _MSG.c.status == bindparam("status"),
        _MSG.c.lane == bindparam("lane"),
        _MSG.c.next_attempt_at <= bindparam("now"),
        or_(_MSG.c.lease_expires_at.is_(None), _MSG.c.lease_expires_at < bindparam("now")),
        _running_campaign(),
    )
    .order_by(_MSG.c.next_attempt_at, _MSG.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True, of=_MSG)
)

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def _render(session: Session, message: RenderInput) -> bytes:
    """A form letter's recipient: rendered and composed by ``sendas.merge``."""
    merge = importlib.import_module("sendas.merge")
    render: Callable[[Session, RenderInput], bytes] = merge.render_message
    return render(session, message)


def render_many(session: Session, batches: list[list[RenderInput]]) -> list[list[Rendered | str]]:
    """Render form letters (a read session: nothing is written here). Per message, the bytes
    to submit or why it cannot be rendered. The raw message is stored by :func:`mark_many`
    in the same commit that marks it ``sending``."""
    out: list[list[Rendered | str]] = []
    for batch in batches:
        done: list[Rendered | str] = []
        for item in batch:
            try:
                raw = _render(session, item)
            except (SendasError, ImportError, ValueError) as exc:
                done.append(f"The form letter could not be rendered for this recipient: {exc}")
                continue
            done.append(Rendered(raw, item.subject, item.message_id))
        out.append(done)
    return out


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
    alias: Alias | None = None
    alias_id = lane_alias_id(lane)
    if alias_id is not None:
        alias = session.get(Alias, alias_id)
        if alias is None:
            return None
        if alias.needs_reauth:
            session.execute(_UPDATE_LANE, {"_lane": lane, "needs_attention": True})
            return None
        delay_ms = alias.delay_ms
    else:
        system = session.get(SystemOutgoing, 1)
        if system is None or not system.smtp_host:
            return None
        delay_ms = system.delay_ms
    if delay_ms > 0:
        limit = max(1, min(cfg.max_paced_batch, int(cfg.paced_window_seconds * 1000 // delay_ms)))
    else:
        limit = min(batch or cfg.batch_size, cfg.batch_size)

    rows: list[Any] = []
    for status in READY:
        if len(rows) >= limit:
            break
        params = {"status": status, "lane": lane, "now": now, "limit": limit - len(rows)}
        rows.extend(session.execute(_CLAIM_MESSAGES, params).all())
    if not rows:
        return None

    lease_until = now + timedelta(seconds=cfg.lease_seconds)
    delay = timedelta(milliseconds=delay_ms)
    reserved = row.next_send_at
    if not_before is None and reserved is not None:
        # Taking over from another worker: its last start reached the wire a little after
        # it was stamped, so keep a hair more than the delay (no drift within one worker).
        reserved += HANDOVER_GUARD
    slot = max(x for x in (now, reserved, not_before) if x is not None)
    claimed: list[ClaimedMessage] = []
    changes: list[dict[str, Any]] = []  # the few rows that need more than the lease
    for m in rows:
        render: RenderInput | None = None
        change: dict[str, Any] = {"id": m.id}
        if m.raw is None:
            # Rendered after this transaction (render_many), stored when marked sending.
            render = RenderInput(m.id, m.campaign_id, list(m.to_addrs or []),
                                 list(m.recipients), m.merge_fields)  # fmt: skip
        elif not m.message_id:
            found = _MESSAGE_ID.search(m.raw)
            change["message_id"] = found.group(1).decode("ascii", "replace") if found else ""
        pending = pending_recipients(list(m.recipients), m.recipient_results)
        if not pending:  # every recipient already has a final result
            sent = any(v.get("status") == "sent" for v in (m.recipient_results or {}).values())
            changes.append({**change, "status": "sent" if sent else "failed"})
            continue
        if len(change) > 1:
            changes.append(change)
        claimed.append(
            ClaimedMessage(
                id=m.id, envelope_from=m.envelope_from, recipients=pending, raw=m.raw or b"",
                attempts=m.attempts, recipient_results=m.recipient_results,
                slot=slot if delay_ms > 0 else None, render=render,
            )
        )  # fmt: skip
        if delay_ms > 0:
            slot = slot + delay
    _update_rows(session, changes)
    _update_ids(session, [m.id for m in claimed], lease_owner=owner, lease_expires_at=lease_until)
    lane_values: dict[str, Any] = {"_lane": lane, "owner_expires_at": lease_until}
    if delay_ms > 0 and claimed:
        lane_values["next_send_at"] = slot  # one delay after the last reserved slot
    session.execute(_UPDATE_LANE, lane_values)
    if not claimed:
        return Claim(lane, delay_ms, _placeholder_endpoint(), None, None, [])

    timeout = cfg.smtp_timeout
    if alias is not None:
        endpoint = alias_endpoint(alias, box, timeout, token_providers)
        imap, skip_reason = _imap_for(alias, box, timeout)
    else:
        endpoint = system_endpoint(session.get_one(SystemOutgoing, 1), box, timeout)
        imap, skip_reason = None, "automated mail has no Sent folder"
    return Claim(lane, delay_ms, endpoint, imap, skip_reason, claimed)


def _placeholder_endpoint() -> SmtpEndpoint:
    return SmtpEndpoint(host="invalid", port=25, tls="none")


@dataclass(frozen=True)
class MarkRequest:
    """Mark ``ids`` sending (storing the rendered form letters among them first), and
    fail the ones that could not be rendered."""

    owner: str
    ids: list[int]
    now: datetime
    lease_seconds: float
    rendered: dict[int, Rendered] = field(default_factory=dict, repr=False)
    unrenderable: dict[int, str] = field(default_factory=dict)


def mark_many(session: Session, requests: list[MarkRequest]) -> list[list[int]]:
    """Mark claimed messages ``sending`` (the callers submit right after the commit), for
    many lanes at once: one SELECT and one UPDATE per 500 messages (and one executemany
    storing the rendered form letters).

    Returns, per request, the ids that are still ours and may go out; a message whose claim
    was lost is left alone, one whose form letter is no longer running is given back.
    """
    owners = {r.owner for r in requests}
    wanted = [i for r in requests for i in (*r.ids, *r.unrenderable)]
    c = _MSG.c
    ours: set[int] = set()
    held: set[int] = set()
    for chunk in _chunks(wanted):
        for message_id, running in session.execute(
            select(c.id, _running_campaign())
            .where(c.id.in_(chunk), c.lease_owner.in_(owners), c.status.in_(READY))
            .with_for_update(of=_MSG)
        ):  # fmt: skip
            (ours if running else held).add(message_id)
    # A form letter paused or cancelled since the claim: give its messages back unsent.
    _update_ids(session, sorted(held), lease_owner=None, lease_expires_at=None)
    now = max(r.now for r in requests)
    lease = max(r.lease_seconds for r in requests)
    sending = {"status": "sending", "updated_at": now,
               "lease_expires_at": now + timedelta(seconds=lease)}  # fmt: skip
    failed = [{"id": i, "status": "failed", "error_step": "compose", "server_reply": None,
               "hint": hint, "lease_owner": None, "lease_expires_at": None, "updated_at": now}
              for r in requests for i, hint in r.unrenderable.items() if i in ours]  # fmt: skip
    # A rendered form letter is stored and marked in one write of its row (with the ~5 KB
    # body, each write of a row costs).
    rendered = [{"id": i, "raw": x.raw, "subject": x.subject, "message_id": x.message_id,
                 **sending}
                for r in requests for i, x in r.rendered.items() if i in ours]  # fmt: skip
    _update_rows(session, failed + rendered)
    stored = {row["id"] for row in rendered}
    _update_ids(session, [i for r in requests for i in r.ids if i in ours and i not in stored],
                **sending)  # fmt: skip
    return [[i for i in r.ids if i in ours] for r in requests]


def release_messages(
    session: Session, owner: str, ids: Sequence[int], *, was_sending: bool
) -> None:
    """Give back claimed messages that were not submitted (they are claimable again)."""
    if not ids:
        return
    statuses = ("sending",) if was_sending else READY
    session.execute(
        update(Message)
        .where(Message.id.in_(list(ids)), Message.lease_owner == owner,
               Message.status.in_(statuses))
        .values(status="queued" if was_sending else Message.status, lease_owner=None,
                lease_expires_at=None)
    )  # fmt: skip


@dataclass(frozen=True)
class RecordRequest:
    owner: str
    lane: str
    items: Sequence[tuple[ClaimedMessage, SubmitResult | TransportError]]
    now: datetime
    cfg: OutboxConfig
    copy_skip_reason: str | None


@dataclass(frozen=True)
class _Held:
    """What recording needs of a message row: who holds it and in which state."""

    lease_owner: str | None
    status: str


def record_many(session: Session, requests: list[RecordRequest]) -> list[Recorded]:
    """Store the outcomes of many lanes at once: the rows are read (locked) in one query
    per 500 and written by one executemany per set of columns changed."""
    ids = [c.id for r in requests for c, _ in r.items]
    held: dict[int, _Held] = {}
    c = _MSG.c
    for chunk in _chunks(ids):
        held.update(
            (i, _Held(owner, status))
            for i, owner, status in session.execute(
                select(c.id, c.lease_owner, c.status).where(c.id.in_(chunk)).with_for_update()
            )
        )
    updates: list[dict[str, Any]] = []
    done = [record_outcomes(session, r, held, updates) for r in requests]
    _update_rows(session, updates)
    return done


def record_outcomes(
    session: Session, request: RecordRequest, held: dict[int, _Held], updates: list[dict[str, Any]]
) -> Recorded:
    """Interpret one lane's answers into ``updates`` (rows by primary key); pause the lane
    or flag the alias when the server says so."""
    owner, now, cfg = request.owner, request.now, request.cfg
    done = Recorded()
    pause_reason: str | None = None
    attention: str | None = None
    for claimed, answer in request.items:
        row = held.get(claimed.id)
        if row is None or row.lease_owner != owner or row.status not in ("sending", "unknown"):
            continue  # someone else decided meanwhile (e.g. the owner chose send again)
        out: Outcome = interpret(
            answer, recipients=claimed.recipients, previous=claimed.recipient_results,
            attempts=claimed.attempts, now=now, max_attempts=cfg.max_attempts,
            backoff_base=cfg.backoff_base, backoff_max=cfg.backoff_max,
        )  # fmt: skip
        values: dict[str, Any] = {
            "id": claimed.id, "status": out.status, "recipient_results": out.recipient_results,
            "server_reply": out.server_reply, "error_step": out.error_step, "hint": out.hint,
            "updated_at": now,
        }  # fmt: skip
        if out.count_attempt:
            values["attempts"] = claimed.attempts + 1
        if out.next_attempt_at is not None:
            values["next_attempt_at"] = out.next_attempt_at
        if out.status != "unknown":
            values["lease_owner"] = values["lease_expires_at"] = None
        if out.status == "sent":
            values["sent_at"] = now
            done.sent.append(claimed.id)
            if request.copy_skip_reason is not None:
                values["sent_copy"] = "skipped"
                values["sent_copy_detail"] = request.copy_skip_reason
        updates.append(values)
        lane_action = out.lane
        if lane_action.pause_until is not None and (
            done.pause_until is None or lane_action.pause_until > done.pause_until
        ):
            done.pause_until, pause_reason = lane_action.pause_until, lane_action.pause_reason
        if lane_action.needs_attention:
            attention = lane_action.needs_attention
        done.reconnect = done.reconnect or lane_action.reconnect
    if attention is not None:
        lane_needs_attention(session, request.lane, attention, now)
        done.needs_attention = True
    if done.pause_until is not None:
        reason = pause_reason or "the server asked to wait"
        pause_lane(session, request.lane, done.pause_until, reason)
    return done


def record_sent_copy(session: Session, message_id: int, status: str, detail: str) -> None:
    session.execute(
        update(Message)
        .where(Message.id == message_id)
        .values(sent_copy=status, sent_copy_detail=detail[:2000])
    )
