"""`sendas imap`: the IMAP accounts that keep a copy of sent mail in Sent."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sendas.cli.common import (
    JsonOpt,
    UserOpt,
    actor_for,
    build,
    context,
    emit_json,
    out,
    read_secret_stdin,
)
from sendas.cli.connection import print_test_result
from sendas.net.tls_modes import CLI_HELP as TLS_CLI_HELP
from sendas.schemas import ImapCreate
from sendas.services import imap_accounts as imap_service

imap_app = typer.Typer(help="IMAP accounts (copy sent mail to Sent).", no_args_is_help=True)


@imap_app.command("add")
def imap_add(
    user: UserOpt,
    server: Annotated[str, typer.Option("--server", help="IMAP server as host:port.")],
    username: Annotated[str, typer.Option("--username")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    tls: Annotated[str | None, typer.Option(help=TLS_CLI_HELP)] = None,
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
def imap_list(user: UserOpt, as_json: JsonOpt = False) -> None:
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

    from sendas.services.connection_test import check_imap_account

    with context() as ctx:
        result = asyncio.run(check_imap_account(ctx, actor_for(ctx, user), account_id))
    print_test_result(result)
