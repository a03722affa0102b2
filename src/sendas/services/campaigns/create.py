"""Creating a form letter: check the templates and every recipient, then queue it at once.

The recipients are read twice and never held: the first pass validates every row
(addresses, column counts, merge fields) without touching the database; the second pass
inserts the message rows in chunks inside one write transaction, so a campaign appears
with all of its recipients or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import Alias, Campaign
from sendas.errors import FieldProblem, NotFound, TemplateError, ValidationFailed
from sendas.merge import Recipient, Templates, compile_templates
from sendas.outbox.enqueue import enqueue_form_letter
from sendas.schemas import CampaignCreated, CampaignTemplatesIn, InvalidLine
from sendas.services.aliases import default_alias, get_alias
from sendas.services.campaigns.progress import campaign_out
from sendas.services.campaigns.recipients import BadRow, Row, RowSource
from sendas.services.common import Actor, audit
from sendas.statuses import CampaignStatus

# Bad lines kept for the answer; the rest are only counted.
MAX_REPORTED = 1_000
MAX_PROBLEMS = 100
MAX_KEPT = 100  # skipped lines recorded with the letter


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
        sender = _Sender(alias.id, alias.from_address)
    where = "line" if list_field == "file" else "recipient"
    scan = _scan(templates, rows, where, list_field)
    if scan.invalid and not skip_invalid:
        raise ValidationFailed(_bad_row_problems(scan, list_field, where))
    if scan.valid == 0:
        raise ValidationFailed.one(list_field, "no valid recipient to send to")
    with db.write() as s:
        campaign = _store(s, actor, data, sender, templates, rows, scan, where, list_field)
        out = campaign_out(s, campaign)
    return CampaignCreated(
        **out.model_dump(), invalid_count=scan.invalid, invalid_lines=scan.reported
    )


def _scan(templates: Templates, rows: RowSource, where: str, list_field: str) -> _Scan:
    """First pass: count and list bad rows, render the first good one as a trial."""
    scan = _Scan()
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
    return scan


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
    )
    session.add(campaign)
    session.flush()
    total = enqueue_form_letter(
        session,
        _valid_recipients(templates, rows, where, list_field),
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
