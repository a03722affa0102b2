"""`sendas send`: queue one message through an alias, and optionally wait for its outcome."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sendas.cli.common import UserOpt, actor_for, build, context, err, fail, out


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
    import base64
    import mimetypes
    import time

    from sendas.services import messages as message_service

    if (text is None) == (text_file is None):
        raise fail("give the body with exactly one of --text or --text-file", 2)
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
            for p in attach or []
        ]
    except OSError as exc:
        raise fail(f"cannot read {exc.filename}: {exc.strerror}", 2) from None
    body = build(
        message_service.MessageIn,
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
        deadline = time.monotonic() + timeout
        while True:
            with ctx.db.read() as s:
                msg = message_service.message_out(message_service.get_message(s, actor, message_id))
            if msg.status in ("sent", "failed", "unknown", "cancelled"):
                break
            if time.monotonic() > deadline:
                raise fail(f"message {message_id} is still {msg.status} after {timeout:g} s")
            time.sleep(0.2)
    out.print(f"{msg.status}: {msg.server_reply or ''}".rstrip(": "), highlight=False, markup=False)
    if msg.hint and msg.status != "sent":
        err.print(f"hint: {msg.hint}", highlight=False, markup=False)
    if msg.status != "sent":
        raise typer.Exit(1)
