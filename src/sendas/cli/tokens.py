"""`sendas token`: API tokens for scripts."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sendas.cli.common import context
from sendas.services import users as user_service

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="Email of the token's user.")],
    name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
) -> None:
    """Create an API token; prints the token alone on stdout (for scripts)."""
    with context() as ctx, ctx.db.write() as s:
        _, token = user_service.create_token(s, user_service.get_user_by_email(s, user), name)
    sys.stdout.write(token + "\n")
