"""The ``sendas`` command line: serve, worker, send, rotate-key, db, user, token, alias, imap,
system, oauth, campaign.

Every command works on the database named by the SENDAS_* settings, through the same
services as the API. Bad input gives a one-line error and a non-zero exit code. Each command
group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import typer

from sendas.cli.aliases import alias_app
from sendas.cli.campaigns import campaign_app
from sendas.cli.db import db_app
from sendas.cli.imap import imap_app
from sendas.cli.keys import rotate_key
from sendas.cli.oauth import oauth_app
from sendas.cli.outgoing import system_app
from sendas.cli.send import send
from sendas.cli.serve import serve, worker
from sendas.cli.suppressions import suppression_app
from sendas.cli.tokens import token_app
from sendas.cli.users import user_app

__all__ = ["app", "main"]

app = typer.Typer(
    help="sendas: per-user outgoing email.", no_args_is_help=False, add_completion=False
)


@app.callback(invoke_without_command=True)
def main_callback(typer_ctx: typer.Context) -> None:
    """Without a command, `sendas` serves the web app and API."""
    if typer_ctx.invoked_subcommand is None:
        serve()


# Registration order is the order `sendas --help` lists them in.
app.command("serve")(serve)
app.command("worker")(worker)
app.command("send")(send)
app.command("rotate-key")(rotate_key)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(alias_app, name="alias")
app.add_typer(imap_app, name="imap")
app.add_typer(system_app, name="system")
app.add_typer(oauth_app, name="oauth")
app.add_typer(campaign_app, name="campaign")
app.add_typer(suppression_app, name="suppressions")


def main() -> None:
    app()
