"""`sendas token`: API tokens for scripts (create, list, revoke)."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from sendas.cli.common import JsonOpt, build, context, emit_json, fail, out
from sendas.schemas import TokenCreate
from sendas.services import accounts
from sendas.services import users as user_service
from sendas.services.common import OPERATOR

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)

_RELATIVE = re.compile(r"^(\d{1,5})([dh])$")


def parse_expires(value: str | None) -> datetime | None:
    """``30d``, ``12h`` or an ISO 8601 date and time with a zone; None: never expires."""
    if value is None:
        return None
    found = _RELATIVE.match(value.strip())
    if found:
        amount, unit = int(found.group(1)), found.group(2)
        return datetime.now(UTC) + (
            timedelta(days=amount) if unit == "d" else timedelta(hours=amount)
        )
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise fail(
            "expires: use 30d, 12h or a date and time such as 2030-01-31T12:00Z", 2
        ) from None


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="Email of the token's user.")],
    name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
    expires: Annotated[
        str | None,
        typer.Option(help="When it stops working: 30d, 12h or an ISO 8601 time with a zone."),
    ] = None,
) -> None:
    """Create an API token; prints the token alone on stdout (for scripts)."""
    data = build(TokenCreate, name=name, expires_at=parse_expires(expires))
    with context() as ctx, ctx.db.write() as s:
        owner = user_service.get_user_by_email(s, user)
        _, token = user_service.create_token(s, owner, data.name, data.expires_at)
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(
    user: Annotated[str, typer.Option("--user", help="Email of the tokens' user.")],
    as_json: JsonOpt = False,
) -> None:
    """List a user's API tokens (never the tokens themselves)."""
    with context() as ctx, ctx.db.read() as s:
        owner = user_service.get_user_by_email(s, user)
        rows: list[dict[str, Any]] = [
            {
                "id": t.id,
                "name": t.name,
                "created_at": _when(t.created_at),
                "expires_at": _when(t.expires_at),
                "last_used_at": _when(t.last_used_at),
            }
            for t in accounts.list_tokens(s, owner.id)
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "name", "created", "expires", "last used")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], r["created_at"], r["expires_at"], r["last_used_at"])
    out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke an API token by id (see `sendas token list`): it stops working at once."""
    with context() as ctx, ctx.db.write() as s:
        accounts.revoke_token(s, OPERATOR, token_id)
    out.print(f"revoked token {token_id}", highlight=False)
