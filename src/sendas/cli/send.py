"""`sendas send`: queue one message through an alias, and optionally wait for its outcome."""

from __future__ import annotations

import base64
import mimetypes
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sendas.cli.common import UserOpt, actor_for, build, context, err, fail, out
from sendas.context import AppContext
from sendas.services.common import Actor
from sendas.statuses import DONE, MessageStatus

if TYPE_CHECKING:
    from sendas.schemas import MessageOut


def send(
    user: UserOpt,
    to: Annotated[list[str], typer.Option("--to", help="Recipient (repeatable).")],
    subject: Annotated[str, typer.Option(help="Subject line.")],
    alias: Annotated[
        int | None, typer.Option("--alias", help="Alias id (default: the user's default alias).")
    ] = None,
    cc: Annotated[list[str] | None, typer.Option("--cc", help="Cc (repeatable).")] = None,
    bcc: Annotated[list[str] | None, typer.Option("--bcc", help="Bcc (repeatable).")] = None,
    text: Annotated[str | None, typer.Option(help="Plain-text body.")] = None,
    text_file: Annotated[
        Path | None,
        typer.Option("--text-file", help="Read the plain-text body from a file ('-': stdin)."),
    ] = None,
    html_file: Annotated[Path | None, typer.Option("--html-file", help="HTML body.")] = None,
    attach: Annotated[
        list[Path] | None, typer.Option("--attach", help="Attach a file (repeatable).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait until the message is sent, failed or unknown (needs a running worker).",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 300.0,
) -> None:
    """Queue one message through an alias; prints its id (and its outcome with --wait)."""
    from sendas.schemas import MessageIn
    from sendas.services import messages as message_service

    if (text is None) == (text_file is None):
        raise fail("give the body with exactly one of --text or --text-file", 2)
    text, html, attachments = _read_files(text, text_file, html_file, attach or [])
    body = build(
        MessageIn,
        alias_id=alias,
        to=to,
        cc=cc or [],
        bcc=bcc or [],
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
    )
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            message_id = message_service.send_message(s, actor, body).id
        out.print(f"queued message {message_id}", highlight=False)
        if not wait:
            return
        msg = _wait_for_outcome(ctx, actor, message_id, timeout)
    _print_outcome(msg)


def _read_files(
    text: str | None, text_file: Path | None, html_file: Path | None, attach: list[Path]
) -> tuple[str | None, str | None, list[dict[str, str]]]:
    """The bodies and attachments named on the command line; exit 2 if a file is unreadable."""
    try:
        if text_file is not None:
            text = sys.stdin.read() if str(text_file) == "-" else text_file.read_text()
        html = html_file.read_text() if html_file is not None else None
        attachments = [
            {
                "filename": p.name,
                "content_type": mimetypes.guess_type(p.name)[0] or "application/octet-stream",
                "content_base64": base64.b64encode(p.read_bytes()).decode(),
            }
            for p in attach
        ]
    except OSError as exc:
        raise fail(f"cannot read {exc.filename}: {exc.strerror}", 2) from None
    return text, html, attachments


def _wait_for_outcome(ctx: AppContext, actor: Actor, message_id: int, timeout: float) -> MessageOut:
    """Poll until the message is finished; exit 1 when it still is not after `timeout`."""
    from sendas.services import messages as message_service

    deadline = time.monotonic() + timeout
    while True:
        with ctx.db.read() as s:
            msg = message_service.message_out(message_service.get_message(s, actor, message_id))
        if msg.status in DONE:
            return msg
        if time.monotonic() > deadline:
            raise fail(f"message {message_id} is still {msg.status} after {timeout:g} s")
        time.sleep(0.2)


def _print_outcome(msg: MessageOut) -> None:
    """The status and the server's reply; a hint and exit 1 unless it was sent."""
    out.print(f"{msg.status}: {msg.server_reply or ''}".rstrip(": "), highlight=False, markup=False)
    if msg.hint and msg.status != MessageStatus.SENT:
        err.print(f"hint: {msg.hint}", highlight=False, markup=False)
    if msg.status != MessageStatus.SENT:
        raise typer.Exit(1)
