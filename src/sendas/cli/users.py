"""`sendas user`: add and list users."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.table import Table

from sendas.cli.common import JsonOpt, build, context, emit_json, out, read_secret_stdin
from sendas.schemas import UserCreate
from sendas.services import users as user_service
from sendas.services.common import OPERATOR

user_app = typer.Typer(help="Users.", no_args_is_help=True)


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
def user_list(as_json: JsonOpt = False) -> None:
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
