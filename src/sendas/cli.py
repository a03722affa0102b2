"""The ``sendas`` command line: serve, worker, db, user, token, alias, imap, system, rotate-key.

Every command works on the database named by the SENDAS_* settings, through the same
services as the API. Bad input gives a one-line error and a non-zero exit code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.table import Table

from sendas.config import Settings
from sendas.context import AppContext, configure_logging
from sendas.errors import NotFound, SendasError, ValidationFailed
from sendas.outbox.statuses import ACTIVE, DONE, FINISHED, MessageStatus
from sendas.schemas import AliasCreate, AliasPatch, ImapCreate, SystemOutgoingIn, UserCreate
from sendas.services import aliases as alias_service
from sendas.services import imap_accounts as imap_service
from sendas.services import system_outgoing as system_service
from sendas.services import users as user_service
from sendas.services.common import OPERATOR, Actor

app = typer.Typer(
    help="sendas: per-user outgoing email.", no_args_is_help=False, add_completion=False
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
alias_app = typer.Typer(help="Email aliases of a user.", no_args_is_help=True)
imap_app = typer.Typer(help="IMAP accounts (copy sent mail to Sent).", no_args_is_help=True)
system_app = typer.Typer(help="Database-wide settings.", no_args_is_help=True)
outgoing_app = typer.Typer(help="Outgoing settings for automated mail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(alias_app, name="alias")
app.add_typer(imap_app, name="imap")
app.add_typer(system_app, name="system")
system_app.add_typer(outgoing_app, name="outgoing")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


@contextmanager
def context(*, migrate: bool = True) -> Iterator[AppContext]:
    """Build the context; turn our errors into one line on stderr and an exit code."""
    try:
        ctx = AppContext.build(Settings(), migrate=migrate)
    except SendasError as exc:
        raise fail(str(exc)) from None
    try:
        yield ctx
    except ValidationFailed as exc:
        raise fail(_problems_text(exc), 2) from None
    except NotFound as exc:
        raise fail(str(exc)) from None
    except SendasError as exc:
        raise fail(str(exc)) from None
    finally:
        ctx.close()


def _problems_text(exc: ValidationFailed) -> str:
    return "; ".join(f"{p.loc[-1]}: {p.msg}" for p in exc.problems)


def build(model: Callable[..., T], **values: Any) -> T:
    """Validate CLI input with the API's own schemas; unset options are left out."""
    try:
        return model(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        msgs = []
        for e in exc.errors():
            msg = str(e["msg"]).removeprefix("Value error, ")
            msgs.append(f"{'.'.join(str(p) for p in e['loc'])}: {msg}")
        raise fail("; ".join(msgs), 2) from None


def read_secret_stdin() -> SecretStr:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise fail("no password on standard input", 2)
    return SecretStr(value)


def actor_for(ctx: AppContext, email: str) -> Actor:
    with ctx.db.read() as s:
        return Actor.of(user_service.get_user_by_email(s, email))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


# --- serve, worker, db ----------------------------------------------------------------------


@app.callback(invoke_without_command=True)
def main_callback(typer_ctx: typer.Context) -> None:
    """Without a command, `sendas` serves the web app and API."""
    if typer_ctx.invoked_subcommand is None:
        serve()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (SENDAS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (SENDAS_PORT).")] = None,
) -> None:
    """Upgrade the database, then serve the web UI and the API (with an embedded worker)."""
    import uvicorn

    from sendas.api import create_app
    from sendas.bootstrap import ensure_first_admin

    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    configure_logging(settings.log_level)
    with context() as ctx:
        first = ensure_first_admin(ctx)
        if first is not None:
            email, password = first
            out.print(
                f"[bold]First start:[/] created admin [cyan]{email}[/] with password "
                f"[cyan]{password}[/] (shown once). Log in at {settings.base_url}/login",
                highlight=False,
                soft_wrap=True,
            )
        out.print(f"sendas serving on http://{settings.host}:{settings.port}", highlight=False)
        web_app = create_app(settings, ctx=ctx)
        if settings.embedded_worker:
            from sendas.outbox import embedded_worker_hook

            web_app.state.startup_hooks.append(embedded_worker_hook)
        uvicorn.run(
            web_app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
        )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from sendas.db.migrate import current_revision, upgrade

    with context(migrate=False) as ctx:
        upgrade(ctx.db.engine, revision)
        out.print(f"database at revision {current_revision(ctx.db.engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' removes every table)."""
    from sendas.db.migrate import current_revision, downgrade

    with context(migrate=False) as ctx:
        downgrade(ctx.db.engine, revision)
        out.print(f"database at revision {current_revision(ctx.db.engine)}")


# --- users and tokens -----------------------------------------------------------------------


@user_app.command("add")
def user_add(
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Add a user. Without --password-stdin a password is generated and printed once."""
    generated = None
    if password_stdin:
        password = read_secret_stdin()
    else:
        generated = user_service.generate_password()
        password = SecretStr(generated)
    data = build(
        UserCreate, email=email, name=name, role="admin" if admin else "user", password=password
    )
    with context() as ctx, ctx.db.write() as s:
        user = user_service.create_user(s, data)
        out.print(f"added {user.role} {user.email} (id {user.id})", highlight=False)
    if generated:
        out.print(f"password: {generated}", highlight=False)


@user_app.command("list")
def user_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List users."""
    with context() as ctx, ctx.db.read() as s:
        users: list[dict[str, Any]] = [
            {"id": u.id, "email": u.email, "name": u.name, "role": u.role}
            for u in user_service.list_users(s, OPERATOR)
        ]
    if as_json:
        emit_json(users)
        return
    table = Table("id", "email", "name", "role")
    for u in users:
        table.add_row(str(u["id"]), u["email"], u["name"], u["role"])
    out.print(table)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="Email of the token's user.")],
    name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
) -> None:
    """Create an API token; prints the token alone on stdout (for scripts)."""
    with context() as ctx, ctx.db.write() as s:
        _, token = user_service.create_token(s, user_service.get_user_by_email(s, user), name)
    sys.stdout.write(token + "\n")


# --- aliases --------------------------------------------------------------------------------

UserOpt = Annotated[str, typer.Option("--user", "-u", help="Email of the alias's owner.")]


def _alias_values(**kw: Any) -> dict[str, Any]:
    if kw.pop("password_stdin", False):
        kw["smtp_password"] = read_secret_stdin()
    return kw


def _alias_row(a: Any) -> dict[str, Any]:
    return alias_service.alias_out(a).model_dump(mode="json")


def _print_warnings(warnings: list[str]) -> None:
    for w in warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)


@alias_app.command("add")
def alias_add(
    user: UserOpt,
    description: Annotated[
        str, typer.Option(help="Unique name of the alias, shown only in sendas.")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Alias Name shown to recipients.")
    ] = None,
    from_address: Annotated[str | None, typer.Option("--from", help="From address.")] = None,
    reply_to: Annotated[str | None, typer.Option("--reply-to", help="Reply-To address.")] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="SMTP server as host:port.")
    ] = None,
    username: Annotated[str | None, typer.Option("--username", help="SMTP user name.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the SMTP password from stdin.")
    ] = False,
    tls: Annotated[str | None, typer.Option(help="auto | implicit | starttls | none.")] = None,
    imap_account: Annotated[
        int | None, typer.Option("--imap-account", help="IMAP account id.")
    ] = None,
    default: Annotated[
        bool, typer.Option("--default", help="Make this the default alias.")
    ] = False,
    delay_ms: Annotated[
        int | None, typer.Option("--delay-ms", help="Delay between emails (ms).")
    ] = None,
    auth: Annotated[str | None, typer.Option(help="password | google | microsoft.")] = None,
) -> None:
    """Add an email alias for a user."""
    values = _alias_values(
        description=description,
        alias_name=name,
        from_address=from_address,
        reply_to=reply_to,
        smtp_server=server,
        smtp_username=username,
        password_stdin=password_stdin,
        tls=tls,
        imap_account_id=imap_account,
        is_default=default or None,
        delay_ms=delay_ms,
        auth=auth,
    )
    data = build(AliasCreate, **values)
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            alias, warnings = alias_service.create_alias(s, actor, data, ctx.secrets)
            out.print(f"added alias {alias.id} {alias.description!r}", highlight=False)
    _print_warnings(warnings)


@alias_app.command("edit")
def alias_edit(
    user: UserOpt,
    alias_id: int,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    from_address: Annotated[str | None, typer.Option("--from")] = None,
    reply_to: Annotated[str | None, typer.Option("--reply-to")] = None,
    server: Annotated[str | None, typer.Option("--server")] = None,
    username: Annotated[str | None, typer.Option("--username")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    tls: Annotated[str | None, typer.Option()] = None,
    imap_account: Annotated[int | None, typer.Option("--imap-account")] = None,
    delay_ms: Annotated[int | None, typer.Option("--delay-ms")] = None,
    auth: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change fields of an alias; options left out keep their value (the password too)."""
    values = _alias_values(
        description=description,
        alias_name=name,
        from_address=from_address,
        reply_to=reply_to,
        smtp_server=server,
        smtp_username=username,
        password_stdin=password_stdin,
        tls=tls,
        imap_account_id=imap_account,
        delay_ms=delay_ms,
        auth=auth,
    )
    data = build(AliasPatch, **values)
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            alias, warnings = alias_service.update_alias(s, actor, alias_id, data, ctx.secrets)
            out.print(f"updated alias {alias.id} {alias.description!r}", highlight=False)
    _print_warnings(warnings)


@alias_app.command("list")
def alias_list(user: UserOpt, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a user's aliases."""
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.read() as s:
            rows = [_alias_row(a) for a in alias_service.list_aliases(s, actor)]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "description", "from", "server", "default", "delay ms", "auth")
    for r in rows:
        sender = (
            f"{r['alias_name']} <{r['from_address']}>" if r["alias_name"] else r["from_address"]
        )
        table.add_row(
            str(r["id"]),
            r["description"],
            sender,
            r["smtp_server"],
            "yes" if r["is_default"] else "",
            str(r["delay_ms"]),
            r["auth"],
        )
    out.print(table)


@alias_app.command("delete")
def alias_delete(user: UserOpt, alias_id: int) -> None:
    """Delete an alias (the oldest remaining one becomes default if needed)."""
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            alias_service.delete_alias(s, actor, alias_id)
    out.print(f"deleted alias {alias_id}")


@alias_app.command("default")
def alias_default(user: UserOpt, alias_id: int) -> None:
    """Make an alias the user's default."""
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            alias = alias_service.make_default(s, actor, alias_id)
            out.print(f"alias {alias.id} {alias.description!r} is now the default", highlight=False)


def _print_test(result: dict[str, Any]) -> None:
    """Show a Test Connection result; exit 1 when it failed."""
    for step in result.get("steps", []):
        ok = step.get("ok", step.get("status") == "ok")
        mark = "ok " if ok else "FAIL"
        out.print(
            f"  {mark} {step['step']:<12} {step.get('ms', 0):>7.1f} ms  {step.get('detail', '')}",
            highlight=False,
            markup=False,
        )
    if result["status"] == "OK":
        extra = f" (Sent folder: {result['sent_folder']})" if result.get("sent_folder") else ""
        out.print(f"Status: OK{extra}", highlight=False, markup=False)
        return
    out.print(f"Status: FAILED at {result.get('step')}", highlight=False, markup=False)
    if result.get("server_reply"):
        out.print(f"Server said: {result['server_reply']}", highlight=False, markup=False)
    if result.get("hint"):
        out.print(f"What to do: {result['hint']}", highlight=False, markup=False)
    raise typer.Exit(1)


@alias_app.command("test")
def alias_test(
    user: UserOpt, alias_id: int, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Test Connection: connect, TLS, log in, MAIL FROM/RCPT TO (no mail is sent)."""
    import asyncio

    from sendas.services.connection_test import test_saved_alias

    with context() as ctx:
        result = asyncio.run(test_saved_alias(ctx, actor_for(ctx, user), alias_id))
    if as_json:
        emit_json(result)
        raise typer.Exit(0 if result["status"] == "OK" else 1)
    _print_test(result)


# --- IMAP accounts --------------------------------------------------------------------------


@imap_app.command("add")
def imap_add(
    user: UserOpt,
    server: Annotated[str, typer.Option("--server", help="IMAP server as host:port.")],
    username: Annotated[str, typer.Option("--username")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    tls: Annotated[str | None, typer.Option(help="auto | implicit | starttls | none.")] = None,
    sent_folder: Annotated[
        str | None, typer.Option("--sent-folder", help="Override the Sent folder.")
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add an IMAP account."""
    data = build(
        ImapCreate,
        imap_server=server,
        username=username,
        tls=tls,
        sent_folder=sent_folder,
        description=description,
        password=read_secret_stdin() if password_stdin else None,
    )
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            acc = imap_service.create_imap_account(s, actor, data, ctx.secrets)
            out.print(f"added IMAP account {acc.id}", highlight=False)


@imap_app.command("list")
def imap_list(user: UserOpt, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a user's IMAP accounts."""
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.read() as s:
            rows = [
                imap_service.imap_out(a).model_dump(mode="json")
                for a in imap_service.list_imap_accounts(s, actor)
            ]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "server", "username", "tls", "sent folder")
    for r in rows:
        table.add_row(
            str(r["id"]), r["imap_server"], r["username"], r["tls"], r["sent_folder"] or "(found)"
        )
    out.print(table)


@imap_app.command("delete")
def imap_delete(user: UserOpt, account_id: int) -> None:
    """Delete an IMAP account (refused while aliases use it)."""
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            imap_service.delete_imap_account(s, actor, account_id)
    out.print(f"deleted IMAP account {account_id}")


@imap_app.command("test")
def imap_test(user: UserOpt, account_id: int) -> None:
    """Log in to an IMAP account and find its Sent folder (nothing is written)."""
    import asyncio

    from sendas.services.connection_test import test_imap_account

    with context() as ctx:
        result = asyncio.run(test_imap_account(ctx, actor_for(ctx, user), account_id))
    _print_test(result)


# --- database outgoing settings -------------------------------------------------------------


@outgoing_app.command("show")
def outgoing_show(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the outgoing settings for automated mail (never the password)."""
    with context() as ctx, ctx.db.read() as s:
        data = system_service.system_out(system_service.get_settings_row(s)).model_dump(mode="json")
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        out.print(f"{key}: {value}", highlight=False, markup=False)


@outgoing_app.command("set")
def outgoing_set(
    from_address: Annotated[str | None, typer.Option("--from")] = None,
    from_name: Annotated[str | None, typer.Option("--from-name")] = None,
    reply_to: Annotated[str | None, typer.Option("--reply-to")] = None,
    server: Annotated[str | None, typer.Option("--server")] = None,
    username: Annotated[str | None, typer.Option("--username")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    tls: Annotated[str | None, typer.Option()] = None,
    delay_ms: Annotated[int | None, typer.Option("--delay-ms")] = None,
) -> None:
    """Change the outgoing settings for automated mail; options left out keep their value."""
    data = build(
        SystemOutgoingIn,
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to,
        smtp_server=server,
        smtp_username=username,
        tls=tls,
        delay_ms=delay_ms,
        smtp_password=read_secret_stdin() if password_stdin else None,
    )
    with context() as ctx, ctx.db.write() as s:
        system_service.update_system_outgoing(s, OPERATOR, data, ctx.secrets)
    out.print("outgoing settings saved")


@outgoing_app.command("test")
def outgoing_test() -> None:
    """Test the outgoing settings for automated mail (no mail is sent)."""
    import asyncio

    from sendas.services.connection_test import test_system_outgoing

    with context() as ctx:
        result = asyncio.run(test_system_outgoing(ctx, OPERATOR))
    _print_test(result)


# --- outbox: worker and single sends ---------------------------------------------------------


@app.command("worker")
def worker_command(
    lease_seconds: Annotated[float, typer.Option(help="Claims last this long unless renewed; a "
                             "dead worker's lanes are taken over after it.")] = 60.0,
    poll_interval: Annotated[float, typer.Option(help="Seconds between looks for work.")] = 0.25,
    lane_hold_seconds: Annotated[float, typer.Option(help="Hand a busy lane to other workers "
                                 "after this long.")] = 60.0,
) -> None:
    """Send queued mail until stopped (SIGTERM/SIGINT finish the submissions in flight)."""
    import asyncio

    from sendas.outbox import OutboxConfig, Worker
    from sendas.outbox.worker import run_until_signalled

    settings = Settings()
    configure_logging(settings.log_level)
    try:
        config = OutboxConfig(
            lease_seconds=lease_seconds, poll_interval=poll_interval,
            lane_hold_seconds=lane_hold_seconds, smtp_timeout=settings.smtp_timeout,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    with context() as ctx:
        asyncio.run(run_until_signalled(Worker(ctx, config)))


@app.command("send")
def send_command(
    user: UserOpt,
    to: Annotated[list[str], typer.Option("--to", help="Recipient (repeatable).")],
    subject: Annotated[str, typer.Option(help="Subject line.")],
    alias: Annotated[int | None, typer.Option("--alias", help="Alias id (default: the "
                     "user's default alias).")] = None,
    cc: Annotated[list[str] | None, typer.Option("--cc", help="Cc (repeatable).")] = None,
    bcc: Annotated[list[str] | None, typer.Option("--bcc", help="Bcc (repeatable).")] = None,
    text: Annotated[str | None, typer.Option(help="Plain-text body.")] = None,
    text_file: Annotated[Path | None, typer.Option("--text-file", help="Read the plain-text "
                         "body from a file ('-': stdin).")] = None,
    html_file: Annotated[Path | None, typer.Option("--html-file", help="HTML body.")] = None,
    attach: Annotated[list[Path] | None, typer.Option("--attach", help="Attach a file "
                      "(repeatable).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the message is sent, "
                    "failed or unknown (needs a running worker).")] = False,
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
            {"filename": p.name,
             "content_type": mimetypes.guess_type(p.name)[0] or "application/octet-stream",
             "content_base64": base64.b64encode(p.read_bytes()).decode()}
            for p in attach or []
        ]
    except OSError as exc:
        raise fail(f"cannot read {exc.filename}: {exc.strerror}", 2) from None
    body = build(message_service.MessageIn, alias_id=alias, to=to, cc=cc or [], bcc=bcc or [],
                 subject=subject, text=text, html=html, attachments=attachments)
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
            if msg.status in DONE:
                break
            if time.monotonic() > deadline:
                raise fail(f"message {message_id} is still {msg.status} after {timeout:g} s")
            time.sleep(0.2)
    out.print(f"{msg.status}: {msg.server_reply or ''}".rstrip(": "), highlight=False,
              markup=False)
    if msg.hint and msg.status != MessageStatus.SENT:
        err.print(f"hint: {msg.hint}", highlight=False, markup=False)
    if msg.status != MessageStatus.SENT:
        raise typer.Exit(1)


# --- form letters -----------------------------------------------------------------------------

campaign_app = typer.Typer(help="Form letters: one message per recipient of a CSV list.",
                           no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")


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


def _follow_campaign(ctx: AppContext, actor: Actor | None, campaign_id: int,
                     interval: float) -> Any:
    """Show a progress bar (done of total, counts, rate, ETA) until the campaign finishes."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sendas.services import campaigns as campaign_service

    status = campaign_service.campaign_status(ctx.db, actor, campaign_id)
    columns = (TextColumn("campaign {task.fields[cid]} {task.fields[state]}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task("", total=status.total, cid=campaign_id, state="", detail="")
        while True:
            remaining = sum(status.counts[k] for k in ACTIVE)
            c = status.counts
            detail = " ".join([f"sent {c[MessageStatus.SENT]}"] + [
                f"{k} {c[k]}" for k in (MessageStatus.FAILED, MessageStatus.UNKNOWN,
                                        MessageStatus.CANCELLED) if c[k]])
            if status.status not in FINISHED:
                detail += f" | {status.rate:.1f}/s | {_eta_text(status)}"
            if status.paused_reason:
                detail += f" | {status.paused_reason}"
            progress.update(task, completed=status.total - remaining, state=status.status,
                            detail=detail)
            if status.status in FINISHED:
                break
            time.sleep(interval)
            status = campaign_service.campaign_status(ctx.db, actor, campaign_id)
    return status


@campaign_app.command("send")
def campaign_send(
    user: UserOpt,
    subject: Annotated[str, typer.Option(help="Subject template, e.g. 'Hello {{ first }}'.")],
    csv_file: Annotated[Path, typer.Option("--csv", help="Recipients: UTF-8 CSV whose first "
                        "line names the columns, one of them 'email'.")],
    text_file: Annotated[Path | None, typer.Option("--text-file", help="Plain-text template.")]
    = None,
    html_file: Annotated[Path | None, typer.Option("--html-file", help="HTML template.")] = None,
    alias: Annotated[int | None, typer.Option("--alias", help="Alias id (default: the user's "
                     "default alias).")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Queue the valid rows "
                            "even if some lines are bad (they are listed).")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Show progress until the campaign "
                      "completes (needs a running worker).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between progress updates.")] = 0.5,
) -> None:
    """Queue a form letter: one message per CSV row, merged from the templates."""
    from sendas.services import campaigns as campaign_service

    if text_file is None and html_file is None:
        raise fail("give a template with --text-file and/or --html-file", 2)
    try:
        text = text_file.read_text(encoding="utf-8") if text_file is not None else None
        html = html_file.read_text(encoding="utf-8") if html_file is not None else None
        csv_file.open("rb").close()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read a file: {exc}", 2) from None
    data = build(campaign_service.CampaignTemplatesIn, alias_id=alias, subject=subject,
                 text=text, html=html)
    with context() as ctx:
        actor = actor_for(ctx, user)
        try:
            created = campaign_service.create_campaign(
                ctx.db, actor, data, campaign_service.csv_rows(lambda: csv_file.open("rb")),
                skip_invalid=skip_invalid,
            )
        except ValidationFailed as exc:
            for p in exc.problems:
                err.print(f"error: {p.loc[-1]}: {p.msg}", markup=False, highlight=False)
            raise typer.Exit(2) from None
        for bad in created.invalid_lines:
            err.print(f"skipped line {bad.line}: {bad.reason}", markup=False, highlight=False)
        if created.invalid_count > len(created.invalid_lines):
            err.print(f"... {created.invalid_count - len(created.invalid_lines)} more bad lines",
                      highlight=False)
        out.print(f"queued campaign {created.id}: {created.total} message(s)"
                  + (f", {created.invalid_count} line(s) skipped" if created.invalid_count
                     else ""), highlight=False)
        if follow:
            final = _follow_campaign(ctx, actor, created.id, interval)
            out.print(_campaign_line(final), highlight=False, markup=False)


@campaign_app.command("status")
def campaign_status_command(
    campaign_id: int,
    follow: Annotated[bool, typer.Option("--follow", help="Show progress until it finishes.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between progress updates.")] = 0.5,
) -> None:
    """Show a campaign's totals by status, rate and ETA."""
    from sendas.services import campaigns as campaign_service

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
    from sendas.services import campaigns as campaign_service

    change = {"pause": campaign_service.pause_campaign,
              "resume": campaign_service.resume_campaign,
              "cancel": campaign_service.cancel_campaign}[action]
    with context() as ctx, ctx.db.write() as s:
        result = campaign_service.campaign_out(s, change(s, None, campaign_id))
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


@app.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every stored secret under a new key."""
    from sendas.services.keys import rotate_key as do_rotate

    with context() as ctx:
        count = do_rotate(ctx.db, ctx.secrets)
    out.print(f"re-encrypted {count} secret(s) under the new key")


def main() -> None:
    app()
