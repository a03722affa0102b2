"""Creating a form letter: check the templates and every recipient, then queue it at once.

The recipients are read twice and never held: the first pass validates every row
(addresses, column counts, merge fields) without touching the database and renders it,
within the per-recipient limits, in the check processes (:mod:`.check`), or here when the
letter is plain text with holes (:mod:`sendas.merge_plain`); the second pass
inserts the message rows, each with its rendered subject, in chunks inside one write
transaction, so a campaign appears with all of its recipients or not at all. Only the
subjects are held between the passes (one per recipient, at most
``SENDAS_TEMPLATE_CHECK_MAX_ROWS``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy.orm import Session

from sendas.config import Settings
from sendas.db.engine import Database
from sendas.db.models import Alias, Campaign
from sendas.errors import FieldProblem, NotFound, TemplateError, ValidationFailed
from sendas.merge import Recipient, Templates, compile_templates
from sendas.merge_plain import PlainLetter, plain_letter
from sendas.outbox.enqueue import enqueue_form_letter
from sendas.schemas import CampaignCreated, CampaignTemplatesIn, InvalidLine
from sendas.services.aliases import default_alias, get_alias
from sendas.services.campaigns import check
from sendas.services.campaigns.progress import campaign_out
from sendas.services.campaigns.recipients import BadRow, Row, RowSource
from sendas.services.common import Actor, audit
from sendas.services.quotas import Limits, check_letter_size, check_send_room
from sendas.services.suppressions import normalise, suppressed_among, whole_list
from sendas.statuses import CampaignStatus

# Bad lines kept for the answer; the rest are only counted.
MAX_REPORTED = 1_000
MAX_PROBLEMS = 100
MAX_KEPT = 100  # skipped lines recorded with the letter
# A suppression list up to this size is read once and held (about 100 bytes an address);
# a longer one is looked up per chunk of rows (about 12 µs a row on SQLite).
SUPPRESSIONS_HELD = 20_000
PLAIN_CHUNK = 5_000  # good rows held at once while a plain letter is checked


@dataclass
class _Scan:
    valid: int = 0
    invalid: int = 0
    reported: list[InvalidLine] = field(default_factory=list)
    # "line<TAB>subject as JSON" per good row, in order, for the second pass: on disk,
    # so that a million recipients' subjects are not held in memory
    subjects: IO[str] = field(default_factory=lambda: tempfile.TemporaryFile("w+"))  # noqa: SIM115 (closed by create_campaign)
    # lines refused by their render, not by their address
    unrendered: set[int] = field(default_factory=set)
    # recipients on the owner's suppression list: not queued, counted, the first ones kept
    suppressed: int = 0
    suppressed_addresses: list[str] = field(default_factory=list)

    def bad(self, row: BadRow, *, render: bool = False) -> None:
        self.invalid += 1
        if len(self.reported) < MAX_REPORTED:
            self.reported.append(InvalidLine(line=row.line, email=row.email, reason=row.reason))
            if render:
                self.unrendered.add(row.line)


@dataclass(frozen=True)
class _Sender:
    alias_id: int
    from_address: str


def create_campaign(
    db: Database,
    actor: Actor,
    data: CampaignTemplatesIn,
    rows: RowSource,
    *,
    skip_invalid: bool = False,
    list_field: str = "file",
    limits: Limits | None = None,
    settings: Settings | None = None,
) -> CampaignCreated:
    """Validate and render every recipient, then queue one message per valid recipient,
    atomically, each with its rendered subject.

    Raises :class:`ValidationFailed` (nothing written) for a template error, a merge field
    some recipient lacks (naming the field and the first such recipient), more recipients
    than ``SENDAS_TEMPLATE_CHECK_MAX_ROWS``, a check past ``SENDAS_TEMPLATE_CHECK_SECONDS``,
    and for bad rows (a bad address, or a render that fails or goes over its limits)
    unless ``skip_invalid``; then the bad rows are listed in the answer and the rest queued.
    ``list_field`` names the recipients in problems: ``file`` (CSV) or ``recipients``.
    Past the actor's ``limits`` the whole letter is refused (RateLimited, or
    ValidationFailed when it is larger than a limit); None: no per-user limit.
    """
    settings = settings or Settings()
    templates = _templates(data)
    with db.read() as s:
        alias = _alias(s, actor, data.alias_id)
        sender = _Sender(alias.id, alias.from_address)
        # A user already at a limit is told so before the list is read.
        check_send_room(s, actor, 1, limits, field=list_field)
        # The owner's list at once when it is short, else one lookup per chunk of rows.
        held = whole_list(s, actor.id, SUPPRESSIONS_HELD)
    where = "line" if list_field == "file" else "recipient"
    size_limits = None if limits is None or actor.is_operator else limits
    checking = _Checking(data, settings, where, list_field, size_limits)
    if held != set():  # nothing to skip for a user whose list is empty
        checking.suppressions = _SuppressionFilter(db, actor.id, held)
    scan = checking.scan(templates, rows)
    with scan.subjects:
        if scan.invalid and not skip_invalid:
            raise ValidationFailed(_bad_row_problems(scan, list_field, where))
        if scan.valid == 0:
            raise ValidationFailed.one(list_field, _nobody_left(scan))
        with db.write() as s:
            check_send_room(s, actor, scan.valid, limits, field=list_field)
            campaign = _store(s, actor, data, sender, templates, rows, scan, where, list_field)
            out = campaign_out(s, campaign)
    return CampaignCreated(
        **out.model_dump(), invalid_count=scan.invalid, invalid_lines=scan.reported
    )


def _nobody_left(scan: _Scan) -> str:
    if scan.suppressed:
        return (
            f"every recipient is on your suppression list ({scan.suppressed} skipped, "
            f"e.g. {scan.suppressed_addresses[0]}): remove them from the list to send to them"
        )
    return "no valid recipient to send to"


_Checked = tuple[Row, str | None]
"""A good row and its subject when the letter is plain (else rendered by a check process)."""


class _SuppressionFilter:
    """Drops the rows whose address is on the owner's suppression list: the ``held``
    list, or one query per chunk in a short read transaction of its own (the scan holds
    no session)."""

    def __init__(self, db: Database, user_id: int, held: set[str] | None) -> None:
        self.db, self.user_id, self.held = db, user_id, held

    def keep(self, chunk: list[_Checked], scan: _Scan) -> list[_Checked]:
        found = self.held
        if found is None:
            with self.db.read() as s:
                found = suppressed_among(s, self.user_id, (r.email for r, _ in chunk))
        if not found:
            return chunk
        kept = []
        for row, subject in chunk:
            address = normalise(row.email)
            if address not in found:
                kept.append((row, subject))
                continue
            scan.suppressed += 1
            kept_ones = scan.suppressed_addresses
            if len(kept_ones) < MAX_KEPT and address not in kept_ones:
                kept_ones.append(address)
        return kept


class _Checking:
    """The first pass: every row checked, the good ones rendered in chunks, within budgets."""

    def __init__(
        self,
        data: CampaignTemplatesIn,
        settings: Settings,
        where: str,
        field: str,
        limits: Limits | None = None,
    ):
        self.letter: check.Letter = (data.subject, data.text, data.html)
        self.limits = limits  # the per-user letter size, checked as the list is read
        self.settings = settings
        self.checker = check.checker(settings)
        self.where, self.list_field = where, field
        self.until = check.deadline(settings)
        # Good rows in order, each with its subject when the letter is plain (computed here)
        # or None (rendered by a check process); ``slow`` counts the latter.
        self.chunk: list[_Checked] = []
        self.slow = 0
        self.plain: PlainLetter | bool | None = False  # False: not looked at yet
        self.suppressions: _SuppressionFilter | None = None
        self.screened = 0  # leading rows of ``chunk`` the suppression filter has kept

    def scan(self, templates: Templates, rows: RowSource) -> _Scan:
        scan = _Scan()
        cap = self.settings.template_check_max_rows
        for count, row in enumerate(rows(), start=1):
            if count > cap:
                raise ValidationFailed.one(
                    self.list_field,
                    f"more than {cap} recipients (SENDAS_TEMPLATE_CHECK_MAX_ROWS)",
                )
            if isinstance(row, BadRow):
                scan.bad(row)
                continue
            problem = _recipient_problem(templates, row, self.where, self.list_field)
            if isinstance(problem, BadRow):
                scan.bad(problem)
                continue
            subject = self._plain_subject(row)
            self.chunk.append((row, subject))
            self.slow += subject is None
            if self.limits is not None:
                self._check_size(scan, self.limits)
            if self.slow >= check.CHUNK or len(self.chunk) >= PLAIN_CHUNK:
                self._render(scan)
        self._render(scan)
        return scan

    def _check_size(self, scan: _Scan, limits: Limits) -> None:
        """Refuse a letter larger than the per-user limits, counting what will be queued:
        before refusing, the pending rows on the suppression list are dropped (they are
        skipped, not sent)."""
        try:
            check_letter_size(scan.valid + len(self.chunk), limits, self.list_field)
        except ValidationFailed:
            if self.suppressions is None or self.screened == len(self.chunk):
                raise
            self._screen(scan)
            check_letter_size(scan.valid + len(self.chunk), limits, self.list_field)

    def _screen(self, scan: _Scan) -> None:
        """Drop the pending rows on the suppression list that were not looked at yet."""
        if self.suppressions is not None and self.screened < len(self.chunk):
            pending = self.chunk[self.screened :]
            kept = self.suppressions.keep(pending, scan)
            self.slow -= sum(s is None for _, s in pending) - sum(s is None for _, s in kept)
            self.chunk[self.screened :] = kept
        self.screened = len(self.chunk)

    def _plain_subject(self, row: Row) -> str | None:
        """The row's subject when the letter is plain text with holes (no render needed)."""
        if self.plain is False:
            sample = Recipient(row.email, row.fields)
            self.plain = plain_letter(*self.letter, self.checker.limits, sample)
        if isinstance(self.plain, PlainLetter):
            return self.plain.subject(row.email, row.fields)
        return None

    def _render(self, scan: _Scan) -> None:
        self._screen(scan)
        chunk, self.chunk, self.slow, self.screened = self.chunk, [], 0, 0
        if not chunk:
            return
        slow = [(r.email, r.fields) for r, subject in chunk if subject is None]
        outcomes = iter(self.checker.many(self.letter, slow, self.until) if slow else [])
        for row, subject in chunk:
            outcome = check.Outcome(subject) if subject is not None else next(outcomes, None)
            if outcome is None:
                raise ValidationFailed.one(
                    self.list_field,
                    "rendering every recipient took longer than "
                    f"{self.settings.template_check_seconds:g} s (SENDAS_TEMPLATE_CHECK_SECONDS)",
                    "template_error",
                )
            if outcome.subject is None:
                scan.bad(
                    BadRow(row.line, row.email, outcome.problem or "cannot render"), render=True
                )
            else:
                scan.valid += 1
                scan.subjects.write(f"{row.line}\t{json.dumps(outcome.subject)}\n")


def _store(
    session: Session,
    actor: Actor,
    data: CampaignTemplatesIn,
    sender: _Sender,
    templates: Templates,
    rows: RowSource,
    scan: _Scan,
    where: str,
    list_field: str,
) -> Campaign:
    """Second pass, in the caller's write transaction: the campaign, its messages, the audit."""
    now = datetime.now(UTC)
    campaign = Campaign(
        user_id=actor.id,
        alias_id=sender.alias_id,
        subject=data.subject,
        text_template=data.text,
        html_template=data.html,
        status=CampaignStatus.RUNNING,
        total=0,
        created_at=now,
        suppressed_skips=(
            {"count": scan.suppressed, "addresses": scan.suppressed_addresses}
            if scan.suppressed
            else None
        ),
    )
    session.add(campaign)
    session.flush()
    total = enqueue_form_letter(
        session,
        _valid_recipients(templates, rows, scan.subjects, where, list_field),
        campaign_id=campaign.id,
        user_id=actor.id,
        alias_id=sender.alias_id,
        from_address=sender.from_address,
        now=now,
    )
    if total == 0:
        raise ValidationFailed.one(list_field, "no valid recipient to send to")
    campaign.total = total
    audit(
        session,
        actor,
        "campaign.create",
        "campaign",
        campaign.id,
        owner_id=actor.id,
        # The skipped lines stay with the letter: its page lists them (a bounded number).
        detail={
            "total": total,
            "invalid": scan.invalid,
            "skipped": [bad.model_dump() for bad in scan.reported[:MAX_KEPT]],
            "suppressed": scan.suppressed,
        },
    )
    return campaign


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


def _bad_row_problems(scan: _Scan, list_field: str, where: str) -> list[FieldProblem]:
    problems = []
    for bad in scan.reported[:MAX_PROBLEMS]:
        render = bad.line in scan.unrendered
        loc: tuple[str | int, ...] = ("body", list_field)
        if list_field == "recipients":
            loc = ("body", "recipients", bad.line - 1, *(() if render else ("email",)))
        kind = "template_error" if render else "invalid_row"
        problems.append(FieldProblem(loc, f"{where} {bad.line}: {bad.reason}", kind))
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


def _subjects(file: IO[str]) -> Iterator[tuple[int, str]]:
    file.seek(0)
    for entry in file:
        line, subject = entry.split("\t", 1)
        yield int(line), json.loads(subject)


def _valid_recipients(
    templates: Templates, rows: RowSource, subjects: IO[str], where: str, list_field: str
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Second pass: every valid row with its rendered subject, for the outbox to insert."""
    rendered = _subjects(subjects)
    at, subject_of = 0, ""
    for row in rows():
        if isinstance(row, BadRow):
            continue
        while at < row.line:  # the subjects are in line order, like the rows
            at, subject_of = next(rendered, (sys.maxsize, ""))
        subject = subject_of if at == row.line else None
        # The file may have changed since the first pass: a missing field still refuses.
        if subject is None or _recipient_problem(templates, row, where, list_field) is not None:
            continue
        yield row.email, row.fields, subject
