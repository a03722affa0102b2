"""`sendas campaign`: queue a form letter, follow its progress, pause, resume or cancel it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sendas.cli.common import JsonOpt, UserOpt, actor_for, build, context, emit_json, err, fail, out
from sendas.context import AppContext
from sendas.errors import ValidationFailed
from sendas.services.common import Actor
from sendas.statuses import ACTIVE, FINISHED, MessageStatus

if TYPE_CHECKING:
    # Imported lazily at run time, as the commands below do: the service pulls in the outbox.
    from sendas.schemas import CampaignCreated

campaign_app = typer.Typer(
    help="Form letters: one message per recipient of a CSV list.", no_args_is_help=True
)


# Outcomes the progress line names when there are any.
_SETTLED_BADLY = (MessageStatus.FAILED, MessageStatus.UNKNOWN, MessageStatus.CANCELLED)


def _campaign_line(c: Any) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in c.counts.items() if v)
    line = f"campaign {c.id}: {c.status}, {counts or 'no messages'}"
    if c.paused_reason:
        line += f" — {c.paused_reason}"
    return line


def _eta_text(c: Any) -> str:
    if c.eta_seconds is None:
        return "ETA -"
    minutes, seconds = divmod(int(c.eta_seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{seconds:02d}" if hours else f"ETA {minutes}:{seconds:02d}"


def _follow_campaign(
    ctx: AppContext, actor: Actor | None, campaign_id: int, interval: float
) -> Any:
    """Show a progress bar (done of total, counts, rate, ETA) until the campaign finishes."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sendas.services.campaigns import progress as campaign_service

    status = campaign_service.campaign_status(ctx.db, actor, campaign_id)
    columns = (
        TextColumn("campaign {task.fields[cid]} {task.fields[state]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task("", total=status.total, cid=campaign_id, state="", detail="")
        while True:
            remaining = sum(status.counts[k] for k in ACTIVE)
            c = status.counts
            detail = " ".join(
                [f"sent {c['sent']}"]
                + [
                    f"{k} {c[k]}"
                    for k in (MessageStatus.FAILED, MessageStatus.UNKNOWN, MessageStatus.CANCELLED)
                    if c[k]
                ]
            )
            if status.status not in FINISHED:
                detail += f" | {status.rate:.1f}/s | {_eta_text(status)}"
            if status.paused_reason:
                detail += f" | {status.paused_reason}"
            progress.update(
                task, completed=status.total - remaining, state=status.status, detail=detail
            )
            if status.status in FINISHED:
                break
            time.sleep(interval)
            status = campaign_service.campaign_status(ctx.db, actor, campaign_id)
    return status


@campaign_app.command("send")
def campaign_send(
    user: UserOpt,
    subject: Annotated[str, typer.Option(help="Subject template, e.g. 'Hello {{ first }}'.")],
    csv_file: Annotated[
        Path,
        typer.Option(
            "--csv",
            help="Recipients: a CSV whose first line names the columns (comma, semicolon or "
            "tab; UTF-8 or Windows-1252); the addresses in the column named email, e-mail, "
            "E-mail Address, Email Address or mail. Other columns become merge fields: "
            "'First Name' is {{ first_name }}.",
        ),
    ],
    email_column: Annotated[
        str | None,
        typer.Option(
            "--email-column",
            help="The column holding the addresses (its header, or its number from 1).",
        ),
    ] = None,
    text_file: Annotated[
        Path | None, typer.Option("--text-file", help="Plain-text template.")
    ] = None,
    html_file: Annotated[Path | None, typer.Option("--html-file", help="HTML template.")] = None,
    alias: Annotated[
        int | None, typer.Option("--alias", help="Alias id (default: the user's default alias).")
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Queue the valid rows even if some lines are bad (they are listed).",
        ),
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="Show progress until the campaign completes (needs a running worker)."
        ),
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between progress updates.")] = 0.5,
) -> None:
    """Queue a form letter: one message per CSV row, merged from the templates."""
    from sendas.schemas import CampaignTemplatesIn
    from sendas.services.campaigns.create import create_campaign
    from sendas.services.campaigns.csvfile import CsvLimits
    from sendas.services.campaigns.recipients import csv_rows

    if text_file is None and html_file is None:
        raise fail("give a template with --text-file and/or --html-file", 2)
    try:
        text = text_file.read_text(encoding="utf-8") if text_file is not None else None
        html = html_file.read_text(encoding="utf-8") if html_file is not None else None
        csv_file.open("rb").close()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read a file: {exc}", 2) from None
    data = build(CampaignTemplatesIn, alias_id=alias, subject=subject, text=text, html=html)
    with context() as ctx:
        actor = actor_for(ctx, user)
        try:
            created = create_campaign(
                ctx.db,
                actor,
                data,
                csv_rows(
                    lambda: csv_file.open("rb"),
                    email_column=email_column,
                    limits=CsvLimits.of(ctx.settings),
                ),
                skip_invalid=skip_invalid,
                settings=ctx.settings,
            )
        except ValidationFailed as exc:
            for p in exc.problems:
                err.print(f"error: {p.loc[-1]}: {p.msg}", markup=False, highlight=False)
            raise typer.Exit(2) from None
        _print_created(created)
        if follow:
            final = _follow_campaign(ctx, actor, created.id, interval)
            out.print(_campaign_line(final), highlight=False, markup=False)


def _print_created(created: CampaignCreated) -> None:
    """The skipped lines (on stderr), then the campaign's id and size."""
    for bad in created.invalid_lines:
        err.print(f"skipped line {bad.line}: {bad.reason}", markup=False, highlight=False)
    if created.invalid_count > len(created.invalid_lines):
        err.print(
            f"... {created.invalid_count - len(created.invalid_lines)} more bad lines",
            highlight=False,
        )
    if created.skipped_suppressed:
        err.print(
            f"skipped {created.skipped_suppressed} suppressed address(es): "
            + ", ".join(created.skipped_addresses)
            + (" ..." if created.skipped_suppressed > len(created.skipped_addresses) else ""),
            markup=False,
            highlight=False,
        )
    out.print(
        f"queued campaign {created.id}: {created.total} message(s)"
        + (f", {created.invalid_count} line(s) skipped" if created.invalid_count else ""),
        highlight=False,
    )


@campaign_app.command("status")
def campaign_status_command(
    campaign_id: int,
    follow: Annotated[
        bool, typer.Option("--follow", help="Show progress until it finishes.")
    ] = False,
    as_json: JsonOpt = False,
    interval: Annotated[float, typer.Option(help="Seconds between progress updates.")] = 0.5,
) -> None:
    """Show a campaign's totals by status, rate and ETA."""
    from sendas.services.campaigns import progress as campaign_service

    with context() as ctx:
        if follow and not as_json:
            status = _follow_campaign(ctx, None, campaign_id, interval)
        else:
            status = campaign_service.campaign_status(ctx.db, None, campaign_id)
    if as_json:
        emit_json(status.model_dump(mode="json"))
        return
    out.print(_campaign_line(status), highlight=False, markup=False)
    if status.status not in FINISHED:
        out.print(f"{status.rate:.1f} messages/s, {_eta_text(status)}", highlight=False)


def _campaign_change(action: str, campaign_id: int) -> None:
    from sendas.services.campaigns import lifecycle as campaign_service
    from sendas.services.campaigns.progress import campaign_out

    change = {
        "pause": campaign_service.pause_campaign,
        "resume": campaign_service.resume_campaign,
        "cancel": campaign_service.cancel_campaign,
    }[action]
    with context() as ctx, ctx.db.write() as s:
        result = campaign_out(s, change(s, None, campaign_id))
    out.print(_campaign_line(result), highlight=False, markup=False)


@campaign_app.command("pause")
def campaign_pause(campaign_id: int) -> None:
    """Stop sending a campaign's messages (those being submitted finish)."""
    _campaign_change("pause", campaign_id)


@campaign_app.command("resume")
def campaign_resume(campaign_id: int) -> None:
    """Resume a paused campaign."""
    _campaign_change("resume", campaign_id)


@campaign_app.command("cancel")
def campaign_cancel(campaign_id: int) -> None:
    """Cancel every message of a campaign not yet handed to a server."""
    _campaign_change("cancel", campaign_id)
