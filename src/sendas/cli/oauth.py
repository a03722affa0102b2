"""`sendas oauth`: register the applications behind Sign in with Google / Microsoft."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from sendas.cli.common import JsonOpt, build, context, emit_json, out, read_secret_stdin
from sendas.schemas import OAuthClientIn
from sendas.services import oauth_clients as svc
from sendas.services.common import OPERATOR

oauth_app = typer.Typer(help="Sign in with Google / Microsoft: the registered apps.")

ProviderArg = Annotated[Literal["google", "microsoft"], typer.Argument(help="google or microsoft")]


@oauth_app.command("configure")
def oauth_configure(
    provider: ProviderArg,
    client_id: Annotated[str, typer.Option("--client-id")],
    client_secret_stdin: Annotated[
        bool, typer.Option("--client-secret-stdin", help="Read the client secret from stdin.")
    ] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Microsoft only.")] = None,
    discovery_url: Annotated[str | None, typer.Option("--discovery-url")] = None,
    smtp_server: Annotated[
        str | None,
        typer.Option("--smtp-server", help="host:port instead of the provider's (gateways)."),
    ] = None,
    imap_server: Annotated[
        str | None,
        typer.Option("--imap-server", help="host:port instead of the provider's (gateways)."),
    ] = None,
) -> None:
    """Register (or change) the app; without --client-secret-stdin the stored secret stays."""
    data = build(
        OAuthClientIn,
        client_id=client_id,
        client_secret=read_secret_stdin() if client_secret_stdin else None,
        tenant=tenant,
        discovery_url=discovery_url,
        smtp_server=smtp_server,
        imap_server=imap_server,
    )
    with context() as ctx:
        with ctx.db.write() as s:
            svc.configure_client(s, OPERATOR, provider, data, ctx.secrets)
        with ctx.db.read() as s:
            shown = svc.client_out(s, provider, ctx.settings.base_url)
    out.print(f"{shown.label} sign-in configured", highlight=False, markup=False)
    out.print(f"redirect URI to register: {shown.redirect_uri}", highlight=False, markup=False)


@oauth_app.command("show")
def oauth_show(as_json: JsonOpt = False) -> None:
    """Show both registrations, their redirect URIs and scopes (never the client secret)."""
    with context() as ctx, ctx.db.read() as s:
        clients = svc.list_clients(s, ctx.settings.base_url)
    if as_json:
        emit_json([c.model_dump(mode="json") for c in clients])
        return
    for c in clients:
        out.print(f"[{c.provider}]", highlight=False, markup=False)
        for key, value in c.model_dump(mode="json").items():
            if key != "provider":
                out.print(f"  {key}: {value}", highlight=False, markup=False)


__all__ = ["oauth_app"]
