"""`sendas alias`: add, edit, list, delete, make default and test a user's email aliases."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from sendas.cli.common import (
    JsonOpt,
    UserOpt,
    actor_for,
    build,
    context,
    emit_json,
    err,
    out,
    read_secret_stdin,
)
from sendas.cli.connection import print_test_result
from sendas.net.tls_modes import CLI_HELP as TLS_CLI_HELP
from sendas.schemas import AliasCreate, AliasPatch
from sendas.services import aliases as alias_service

MAXCONN_HELP = (
    "SMTP connections at once (default 1); more only with --delay-ms 0, for relays "
    "(personal mailboxes count connections: keep 1)."
)
alias_app = typer.Typer(help="Email aliases of a user.", no_args_is_help=True)


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
    tls: Annotated[str | None, typer.Option(help=TLS_CLI_HELP)] = None,
    imap_account: Annotated[
        int | None, typer.Option("--imap-account", help="IMAP account id.")
    ] = None,
    default: Annotated[
        bool, typer.Option("--default", help="Make this the default alias.")
    ] = False,
    delay_ms: Annotated[
        int | None, typer.Option("--delay-ms", help="Delay between emails (ms).")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option("--max-connections", help=MAXCONN_HELP)
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
        max_connections=max_connections,
        auth=auth,
    )
    data = build(AliasCreate, **values)
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            alias, warnings = alias_service.create_alias(
                s, actor, data, ctx.secrets, max_connections_cap=ctx.settings.max_connections_cap
            )
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
    tls: Annotated[str | None, typer.Option(help=TLS_CLI_HELP)] = None,
    imap_account: Annotated[int | None, typer.Option("--imap-account")] = None,
    delay_ms: Annotated[int | None, typer.Option("--delay-ms")] = None,
    max_connections: Annotated[
        int | None, typer.Option("--max-connections", help=MAXCONN_HELP)
    ] = None,
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
        max_connections=max_connections,
        auth=auth,
    )
    data = build(AliasPatch, **values)
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            alias, warnings = alias_service.update_alias(
                s,
                actor,
                alias_id,
                data,
                ctx.secrets,
                max_connections_cap=ctx.settings.max_connections_cap,
            )
            out.print(f"updated alias {alias.id} {alias.description!r}", highlight=False)
    _print_warnings(warnings)


@alias_app.command("list")
def alias_list(user: UserOpt, as_json: JsonOpt = False) -> None:
    """List a user's aliases."""
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.read() as s:
            rows = [_alias_row(a) for a in alias_service.list_aliases(s, actor)]
    if as_json:
        emit_json(rows)
        return
    table = Table(
        "id", "description", "from", "server", "default", "delay ms", "connections", "auth"
    )
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
            str(r["max_connections"]),
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


@alias_app.command("test")
def alias_test(user: UserOpt, alias_id: int, as_json: JsonOpt = False) -> None:
    """Test Connection: connect, TLS, log in, MAIL FROM/RCPT TO (no mail is sent)."""
    import asyncio

    from sendas.services.connection_test import check_saved_alias

    with context() as ctx:
        result = asyncio.run(check_saved_alias(ctx, actor_for(ctx, user), alias_id))
    if as_json:
        emit_json(result.model_dump(mode="json"))
        raise typer.Exit(0 if result.ok else 1)
    print_test_result(result)
