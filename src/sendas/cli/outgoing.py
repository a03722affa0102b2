"""`sendas system outgoing`: the database's own settings for automated mail."""

from __future__ import annotations

from typing import Annotated

import typer

from sendas.cli.common import JsonOpt, build, context, emit_json, out, read_secret_stdin
from sendas.cli.connection import print_test_result
from sendas.net.tls_modes import CLI_HELP as TLS_CLI_HELP
from sendas.schemas import SystemOutgoingIn
from sendas.services import system_outgoing as system_service
from sendas.services.common import OPERATOR

system_app = typer.Typer(help="Database-wide settings.", no_args_is_help=True)
outgoing_app = typer.Typer(help="Outgoing settings for automated mail.", no_args_is_help=True)
system_app.add_typer(outgoing_app, name="outgoing")


@outgoing_app.command("show")
def outgoing_show(as_json: JsonOpt = False) -> None:
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
    tls: Annotated[str | None, typer.Option(help=TLS_CLI_HELP)] = None,
    delay_ms: Annotated[int | None, typer.Option("--delay-ms")] = None,
    max_connections: Annotated[
        int | None,
        typer.Option("--max-connections", help="SMTP connections at once; >1 only with delay 0."),
    ] = None,
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
        max_connections=max_connections,
        smtp_password=read_secret_stdin() if password_stdin else None,
    )
    with context() as ctx, ctx.db.write() as s:
        system_service.update_system_outgoing(
            s, OPERATOR, data, ctx.secrets, max_connections_cap=ctx.settings.max_connections_cap
        )
    out.print("outgoing settings saved")


@outgoing_app.command("test")
def outgoing_test() -> None:
    """Test the outgoing settings for automated mail (no mail is sent)."""
    import asyncio

    from sendas.services.connection_test import check_system_outgoing

    with context() as ctx:
        result = asyncio.run(check_system_outgoing(ctx, OPERATOR))
    print_test_result(result)
