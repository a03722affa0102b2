"""`sendas suppressions`: a user's suppression list (addresses form letters skip)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sendas.cli.common import JsonOpt, actor_for, build, context, emit_json, out
from sendas.errors import NotFound
from sendas.schemas import SuppressionIn
from sendas.schemas.fields import unknown_if_out_of_range
from sendas.services import suppressions as svc

suppression_app = typer.Typer(
    help="The suppression list: addresses a user's form letters skip.", no_args_is_help=True
)

ListUserOpt = Annotated[str, typer.Option("--user", "-u", help="Email of the list's owner.")]


@suppression_app.command("list")
def suppressions_list(
    user: ListUserOpt,
    search: Annotated[str | None, typer.Option(help="Part of the address.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=svc.MAX_LIMIT)] = 50,
    before_id: Annotated[int | None, typer.Option(help="Continue after this id.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a user's suppressed addresses, newest first."""
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.read() as s:
            result = svc.list_suppressions(s, actor, q=search, before_id=before_id, limit=limit)
    if as_json:
        emit_json(result.model_dump(mode="json"))
        return
    table = Table("id", "address", "why", "since")
    for e in result.items:
        why = "added by hand" if e.source == "manual" else "bounced"
        if e.reason:
            why += f": {e.reason}"
        table.add_row(str(e.id), e.address, why, e.created_at.isoformat(timespec="seconds"))
    out.print(table)
    if result.next_before_id:
        out.print(f"more: --before-id {result.next_before_id}", highlight=False)


@suppression_app.command("add")
def suppressions_add(
    user: ListUserOpt,
    address: str,
    reason: Annotated[str | None, typer.Option(help="A note: why it is suppressed.")] = None,
) -> None:
    """Add an address by hand: the user's form letters skip it."""
    data = build(SuppressionIn, address=address, reason=reason)
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            row = svc.add_suppression(s, actor, data)
            shown = f"suppressed {row.address} (id {row.id})"
    out.print(shown, markup=False, highlight=False)


@suppression_app.command("remove")
def suppressions_remove(
    user: ListUserOpt,
    entry: Annotated[str, typer.Argument(metavar="ADDRESS_OR_ID")],
) -> None:
    """Take an address (or an entry id) off the list: form letters go to it again."""
    with context() as ctx:
        actor = actor_for(ctx, user)
        with ctx.db.write() as s:
            if entry.isascii() and entry.isdigit():
                entry_id = unknown_if_out_of_range(int(entry))
            else:
                found = svc.find(s, actor.id, entry)
                if found is None:
                    raise NotFound("suppression", entry)
                entry_id = found.id
            address = svc.remove_suppression(s, actor, entry_id).address
    out.print(f"removed {address} from the list", markup=False, highlight=False)
