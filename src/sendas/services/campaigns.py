"""Form letters: create (JSON list or streamed CSV), progress, pause/resume/cancel, outcomes.

Creating a campaign reads the recipients twice and never holds the list: the first pass
validates every row (addresses, column counts, merge fields) without touching the database;
the second pass inserts the message rows in chunks inside one write transaction, so a
campaign appears with all of its recipients or not at all. A 1,000,000-row CSV therefore
costs two reads of the file and the memory of one chunk.

Pausing, resuming and cancelling are status changes in the database: the outbox claims a
campaign's messages only while the campaign is ``running``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String, and_, cast, func, select, update
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import Alias, Campaign, Message
from sendas.errors import Conflict, FieldProblem, NotFound, TemplateError, ValidationFailed
from sendas.merge import Recipient, Templates, compile_templates
from sendas.outbox.completion import complete_if_done
from sendas.outbox.enqueue import enqueue_form_letter
from sendas.outbox.lanes import lane_pause
from sendas.outbox.statuses import ACTIVE, CANCELLABLE, CampaignStatus, MessageStatus
from sendas.services.aliases import default_alias, get_alias
from sendas.services.common import Actor, audit

MESSAGE_STATUSES: tuple[str, ...] = tuple(s for s in MessageStatus if s != MessageStatus.BOUNCED)
# Bad lines kept for the answer; the rest are only counted.
MAX_REPORTED = 1_000
MAX_PROBLEMS = 100
MAX_JSON_RECIPIENTS = 100_000
RATE_WINDOW = timedelta(seconds=60)
PAUSED_BY_OWNER = "paused by its owner"


# --- input and output shapes ----------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1_000_000)


class RecipientIn(_Strict):
    email: str = Field(max_length=320)
    fields: dict[str, Any] = {}


class CampaignTemplatesIn(_Strict):
    """What a campaign says; recipients come as JSON (:class:`CampaignCreate`) or a CSV."""

    alias_id: int | None = None
    subject: str = Field(min_length=1, max_length=998)
    text: str | None = None
    html: str | None = None


class CampaignCreate(CampaignTemplatesIn):
    recipients: list[RecipientIn] = Field(min_length=1, max_length=MAX_JSON_RECIPIENTS)
    skip_invalid: bool = False


class PreviewIn(_Strict):
    subject: str = Field(max_length=998)
    text: str | None = None
    html: str | None = None
    recipient: RecipientIn


class PreviewOut(BaseModel):
    subject: str
    text: str
    html: str | None


class InvalidLine(BaseModel):
    """A refused recipient: CSV line number (header = line 1), or position in a JSON list."""

    line: int
    email: str | None
    reason: str


class CampaignOut(BaseModel):
    id: int
    alias_id: int
    subject: str
    status: CampaignStatus
    paused_reason: str | None
    total: int
    counts: dict[str, int]
    rate: float = Field(description="Messages sent per second over the last minute.")
    eta_seconds: float | None
    created_at: datetime
    completed_at: datetime | None


class CampaignCreated(CampaignOut):
    invalid_count: int = 0
    invalid_lines: list[InvalidLine] = []


class MessageOutcome(BaseModel):
    id: int
    email: str
    status: str
    attempts: int
    server_reply: str | None
    hint: str | None
    error_step: str | None
    sent_at: datetime | None
    updated_at: datetime


class MessagePage(BaseModel):
    items: list[MessageOutcome]
    next_after_id: int | None


# --- recipient rows ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    email: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    email: str | None
    reason: str


# A source can be read more than once; each call starts from the first recipient.
RowSource = Callable[[], Iterator[Row | BadRow]]

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?|xn--[A-Za-z0-9-]{1,59})"
_ASCII_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+{_TLD}")


def address_problem(email: str) -> str | None:
    """Why ``email`` cannot be a recipient, or None.

    Plain ASCII addresses are checked by one regular expression (email_validator costs
    about 90 µs an address, 90 s for a million); anything else goes through email_validator.
    """
    if len(email) > 254:
        return "the address is too long"
    if email.isascii() and _ASCII_ADDRESS.fullmatch(email) and len(email.partition("@")[0]) <= 64:
        return None
    try:
        validate_email(email, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return f"{email!r} is not a valid email address: {exc}"
    if email.isascii():
        return f"{email!r}: sendas sends only plain local@domain addresses"
    return None


def json_rows(recipients: Sequence[RecipientIn]) -> RowSource:
    def rows() -> Iterator[Row | BadRow]:
        for index, r in enumerate(recipients, start=1):
            email = r.email.strip()
            problem = address_problem(email)
            yield BadRow(index, email, problem) if problem else Row(index, email, r.fields)

    return rows


def csv_rows(open_binary: Callable[[], AbstractContextManager[IO[bytes]]]) -> RowSource:
    """Rows of a UTF-8 CSV whose first line names the columns; one must be ``email``.

    ``open_binary`` opens the file from its start each time (the upload, or a path).
    A header problem, a broken quote or undecodable bytes raise :class:`ValidationFailed`
    for ``file``; a bad row is yielded as a :class:`BadRow` with its line number.
    """

    def rows() -> Iterator[Row | BadRow]:
        with open_binary() as binary:
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
            try:
                yield from _parse_csv(text)
            except UnicodeDecodeError:
                raise ValidationFailed.one("file", "the file is not UTF-8 text") from None
            finally:
                text.detach()  # the opener closes (or keeps) the underlying file

    return rows


def _parse_csv(text: IO[str]) -> Iterator[Row | BadRow]:
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationFailed.one(
            "file", "the file is empty: line 1 must name the columns"
        ) from None
    except csv.Error as exc:
        raise ValidationFailed.one("file", f"line 1: {exc}") from None
    names = [h.strip() for h in header]
    problems = []
    if any(not n for n in names):
        problems.append("line 1: every column needs a name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"line 1: column names appear twice: {', '.join(dupes)}")
    email_cols = [i for i, n in enumerate(names) if n.casefold() == "email"]
    if len(email_cols) != 1:
        problems.append("line 1: the header must have exactly one column named 'email'")
    if problems:
        raise ValidationFailed([FieldProblem(("body", "file"), p) for p in problems])
    email_at = email_cols[0]
    others = [(i, n) for i, n in enumerate(names) if i != email_at]
    width = len(names)
    previous = reader.line_num
    try:
        for row in reader:
            line, previous = previous + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                continue  # a blank line
            if len(row) != width:
                yield BadRow(line, None, f"expected {width} columns, found {len(row)}")
                continue
            email = row[email_at].strip()
            problem = address_problem(email)
            if problem:
                yield BadRow(line, email, problem)
                continue
            yield Row(line, email, {n: row[i] for i, n in others})
    except csv.Error as exc:
        raise ValidationFailed.one("file", f"line {reader.line_num}: {exc}") from None


# --- create -------------------------------------------------------------------------------------


@dataclass
class _Scan:
    valid: int = 0
    invalid: int = 0
    reported: list[InvalidLine] = field(default_factory=list)
    first: Row | None = None

    def bad(self, row: BadRow) -> None:
        self.invalid += 1
        if len(self.reported) < MAX_REPORTED:
            self.reported.append(InvalidLine(line=row.line, email=row.email, reason=row.reason))


def create_campaign(
    db: Database,
    actor: Actor,
    data: CampaignTemplatesIn,
    rows: RowSource,
    *,
    skip_invalid: bool = False,
    list_field: str = "file",
) -> CampaignCreated:
    """Validate every recipient, then queue one message per valid recipient, atomically.

    Raises :class:`ValidationFailed` (nothing written) for a template error, a merge field
    some recipient lacks (naming the field and the first such recipient), and for bad rows
    unless ``skip_invalid``; then the bad rows are listed in the answer and the rest queued.
    ``list_field`` names the recipients in problems: ``file`` (CSV) or ``recipients``.
    """
    templates = _templates(data)
    with db.read() as s:
        alias = _alias(s, actor, data.alias_id)
        alias_id, from_address = alias.id, alias.from_address

    scan = _Scan()
    where = "line" if list_field == "file" else "recipient"
    for row in rows():
        if isinstance(row, BadRow):
            scan.bad(row)
            continue
        problem = _recipient_problem(templates, row, where, list_field)
        if isinstance(problem, BadRow):
            scan.bad(problem)
            continue
        scan.valid += 1
        if scan.first is None:
            scan.first = row
            _trial_render(templates, row)
    if scan.invalid and not skip_invalid:
        raise ValidationFailed(_bad_row_problems(scan, list_field, where))
    if scan.valid == 0:
        raise ValidationFailed.one(list_field, "no valid recipient to send to")

    now = datetime.now(UTC)
    with db.write() as s:
        campaign = Campaign(
            user_id=actor.id,
            alias_id=alias_id,
            subject=data.subject,
            text_template=data.text,
            html_template=data.html,
            status=CampaignStatus.RUNNING,
            total=0,
            created_at=now,
        )
        s.add(campaign)
        s.flush()
        total = enqueue_form_letter(
            s,
            _valid_recipients(templates, rows, where, list_field),
            campaign_id=campaign.id,
            user_id=actor.id,
            alias_id=alias_id,
            from_address=from_address,
            now=now,
        )
        if total == 0:
            raise ValidationFailed.one(list_field, "no valid recipient to send to")
        campaign.total = total
        audit(
            s,
            actor,
            "campaign.create",
            "campaign",
            campaign.id,
            owner_id=actor.id,
            detail={"total": total, "invalid": scan.invalid},
        )
        s.flush()
        out = _campaign_out(s, campaign)
    return CampaignCreated(
        **out.model_dump(), invalid_count=scan.invalid, invalid_lines=scan.reported
    )


def _templates(data: CampaignTemplatesIn) -> Templates:
    if data.text is None and data.html is None:
        raise ValidationFailed.one("text", "a text or an HTML template is required")
    try:
        return compile_templates(data.subject, data.text, data.html)
    except TemplateError as exc:
        raise ValidationFailed.one(exc.field or "text", str(exc), "template_error") from None


def _alias(session: Session, actor: Actor, alias_id: int | None) -> Alias:
    if alias_id is None:
        alias = default_alias(session, actor.id)
        if alias is None:
            raise ValidationFailed.one("alias_id", "you have no alias yet: add one first")
    else:
        try:
            alias = get_alias(session, actor, alias_id)
        except NotFound:
            raise ValidationFailed.one("alias_id", "no such alias") from None
    if not alias.from_address:
        raise ValidationFailed.one("alias_id", "the alias has no from address")
    return alias


def _recipient_problem(
    templates: Templates, row: Row, where: str, list_field: str
) -> BadRow | None:
    """A missing merge field refuses the campaign; a line break in the subject, the row."""
    try:
        templates.check(Recipient(row.email, row.fields), f"{where} {row.line}")
    except TemplateError as exc:
        if exc.field is not None and templates.missing(row.fields) == exc.field:
            raise ValidationFailed.one(
                templates.part_of(exc.field), str(exc), "unknown_field"
            ) from None
        return BadRow(row.line, row.email, str(exc))
    return None


def _trial_render(templates: Templates, row: Row) -> None:
    """Render the first recipient, so a template that cannot render is refused now."""
    try:
        templates.render(Recipient(row.email, row.fields))
    except TemplateError as exc:
        part = exc.field if exc.field in ("subject", "text", "html") else "text"
        raise ValidationFailed.one(part or "text", str(exc), "template_error") from None


def _bad_row_problems(scan: _Scan, list_field: str, where: str) -> list[FieldProblem]:
    problems = []
    for bad in scan.reported[:MAX_PROBLEMS]:
        loc: tuple[str | int, ...] = ("body", list_field)
        if list_field == "recipients":
            loc = ("body", "recipients", bad.line - 1, "email")
        problems.append(FieldProblem(loc, f"{where} {bad.line}: {bad.reason}", "invalid_row"))
    if scan.invalid > MAX_PROBLEMS:
        problems.append(
            FieldProblem(
                ("body", list_field),
                f"and {scan.invalid - MAX_PROBLEMS} more bad {where}s; "
                "pass skip_invalid=true to send to the valid ones",
                "invalid_row",
            )
        )
    return problems


def _valid_recipients(
    templates: Templates, rows: RowSource, where: str, list_field: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Second pass: every valid row, for the outbox to insert."""
    for row in rows():
        if isinstance(row, BadRow):
            continue
        # The file may have changed since the first pass: a missing field still refuses.
        if _recipient_problem(templates, row, where, list_field) is not None:
            continue
        yield row.email, row.fields


# --- progress ---------------------------------------------------------------------------------


def get_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    """The actor's campaign (``None``: the local operator, any campaign). Else NotFound."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or (actor is not None and campaign.user_id != actor.id):
        raise NotFound("campaign", campaign_id)
    return campaign


def campaign_status(db: Database, actor: Actor | None, campaign_id: int) -> CampaignOut:
    """Totals by status, rate and ETA (the outbox marks a finished campaign completed)."""
    with db.read() as s:
        return _campaign_out(s, get_campaign(s, actor, campaign_id))


def _counts(session: Session, campaign_id: int) -> dict[str, int]:
    counts = dict.fromkeys(MESSAGE_STATUSES, 0)
    for status, n in session.execute(
        select(Message.status, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.status)
    ):
        counts[status] = counts.get(status, 0) + int(n)
    return counts


def _lane_pause(session: Session, alias_id: int, now: datetime) -> str | None:
    pause = lane_pause(session, alias_id, now)
    if pause is None:
        return None
    if pause.until is None:
        return pause.reason or "the alias needs attention: its server refused the sign-in"
    until = pause.until.isoformat(timespec="seconds")
    return f"{pause.reason or 'the server asked to slow down'} (resumes at {until})"


def _campaign_out(session: Session, campaign: Campaign) -> CampaignOut:
    now = datetime.now(UTC)
    counts = _counts(session, campaign.id)
    remaining = sum(counts[k] for k in ACTIVE)
    paused_reason = campaign.paused_reason if campaign.status == CampaignStatus.PAUSED else None
    rate = 0.0
    eta: float | None = None
    if campaign.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
        if campaign.status == CampaignStatus.RUNNING:
            paused_reason = _lane_pause(session, campaign.alias_id, now)
        window_start = max(now - RATE_WINDOW, campaign.created_at)
        recent = (
            session.scalar(
                select(func.count()).where(
                    Message.campaign_id == campaign.id,
                    Message.status == MessageStatus.SENT,
                    Message.sent_at >= window_start,
                )
            )
            or 0
        )
        seconds = max((now - window_start).total_seconds(), 1.0)
        rate = recent / seconds
        if remaining == 0:
            eta = 0.0
        elif rate > 0 and campaign.status == CampaignStatus.RUNNING and paused_reason is None:
            eta = remaining / rate
    return CampaignOut(
        id=campaign.id,
        alias_id=campaign.alias_id,
        subject=campaign.subject,
        status=campaign.status,
        paused_reason=paused_reason,
        total=campaign.total,
        counts=counts,
        rate=round(rate, 3),
        eta_seconds=None if eta is None else round(eta, 1),
        created_at=campaign.created_at,
        completed_at=campaign.completed_at,
    )


# --- pause, resume, cancel -------------------------------------------------------------------


def pause_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    """Stop claiming this campaign's messages; those already being sent finish."""
    campaign = _lock(session, actor, campaign_id)
    if campaign.status == CampaignStatus.PAUSED:
        return campaign
    if campaign.status != CampaignStatus.RUNNING:
        raise Conflict(f"the campaign is {campaign.status}: it cannot be paused")
    campaign.status = CampaignStatus.PAUSED
    campaign.paused_reason = PAUSED_BY_OWNER
    _audit(session, actor, campaign, "campaign.pause")
    return campaign


def resume_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    campaign = _lock(session, actor, campaign_id)
    if campaign.status == CampaignStatus.RUNNING:
        return campaign
    if campaign.status != CampaignStatus.PAUSED:
        raise Conflict(f"the campaign is {campaign.status}: it cannot be resumed")
    campaign.status = CampaignStatus.RUNNING
    campaign.paused_reason = None
    _audit(session, actor, campaign, "campaign.resume")
    complete_if_done(session, campaign)  # its last messages may have settled while paused
    return campaign


def cancel_campaign(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    """Cancel every message not yet handed to a server; messages being sent finish."""
    campaign = _lock(session, actor, campaign_id)
    if campaign.status == CampaignStatus.CANCELLED:
        return campaign
    if campaign.status == CampaignStatus.COMPLETED:
        raise Conflict("the campaign is completed: there is nothing left to cancel")
    now = datetime.now(UTC)
    session.execute(
        update(Message)
        .where(Message.campaign_id == campaign.id, Message.status.in_(CANCELLABLE))
        .values(
            status=MessageStatus.CANCELLED, updated_at=now, lease_owner=None, lease_expires_at=None
        )
        .execution_options(synchronize_session=False)
    )
    campaign.status = CampaignStatus.CANCELLED
    campaign.paused_reason = None
    campaign.completed_at = now
    _audit(session, actor, campaign, "campaign.cancel")
    return campaign


def _lock(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    campaign = session.scalar(select(Campaign).where(Campaign.id == campaign_id).with_for_update())
    if campaign is None or (actor is not None and campaign.user_id != actor.id):
        raise NotFound("campaign", campaign_id)
    return campaign


def _audit(session: Session, actor: Actor | None, campaign: Campaign, action: str) -> None:
    audit(session, actor, action, "campaign", campaign.id, owner_id=campaign.user_id)


def campaign_out(session: Session, campaign: Campaign) -> CampaignOut:
    session.flush()
    return _campaign_out(session, campaign)


# --- per-recipient outcomes ------------------------------------------------------------------


def list_messages(
    session: Session,
    actor: Actor | None,
    campaign_id: int,
    *,
    status: str | None = None,
    q: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> MessagePage:
    """One campaign's recipients and their outcomes, by id; ``q`` searches the address."""
    get_campaign(session, actor, campaign_id)
    if status is not None and status not in MESSAGE_STATUSES:
        raise ValidationFailed(
            [FieldProblem(("query", "status"), f"must be one of {', '.join(MESSAGE_STATUSES)}")]
        )
    limit = max(1, min(limit, 1000))
    conditions = [Message.campaign_id == campaign_id]
    if status:
        conditions.append(Message.status == status)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(cast(Message.to_addrs, String).ilike(pattern, escape="\\"))
    if after_id is not None:
        conditions.append(Message.id > after_id)
    rows = list(
        session.scalars(select(Message).where(and_(*conditions)).order_by(Message.id).limit(limit))
    )
    items = [_outcome(m) for m in rows]
    return MessagePage(items=items, next_after_id=rows[-1].id if len(rows) == limit else None)


def _outcome(m: Message) -> MessageOutcome:
    return MessageOutcome(
        id=m.id,
        email=(m.to_addrs or m.recipients or [""])[0],
        status=m.status,
        attempts=m.attempts,
        server_reply=m.server_reply,
        hint=m.hint,
        error_step=m.error_step,
        sent_at=m.sent_at,
        updated_at=m.updated_at,
    )
