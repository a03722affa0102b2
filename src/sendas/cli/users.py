"""`sendas user`: add, list, disable/enable users, change a role or a password."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.table import Table

from sendas.cli.common import JsonOpt, build, context, emit_json, out, read_secret_stdin
from sendas.schemas import UserCreate, UserPatch
from sendas.services import accounts
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
            {"id": u.id, "email": u.email, "name": u.name, "role": u.role, "disabled": u.disabled}
            for u in user_service.list_users(s, OPERATOR)
        ]
    if as_json:
        emit_json(users)
        return
    table = Table("id", "email", "name", "role", "disabled")
    for u in users:
        disabled = "yes" if u["disabled"] else ""
        table.add_row(str(u["id"]), u["email"], u["name"], u["role"], disabled)
    out.print(table)


def _update(email: str, **changes: Any) -> str:
    """Apply an admin's change to the user with ``email``; returns their email."""
    patch = build(UserPatch, **changes)
    with context() as ctx, ctx.db.write() as s:
        user = user_service.get_user_by_email(s, email)
        accounts.update_user(s, OPERATOR, user.id, patch)
        return user.email


@user_app.command("passwd")
def user_passwd(
    email: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
) -> None:
    """Set a user's password (asked for twice, or read from stdin). Their web sessions
    end; their API tokens keep working."""
    if password_stdin:
        password = read_secret_stdin()
    else:
        password = SecretStr(
            typer.prompt("New password", hide_input=True, confirmation_prompt=True)
        )
    out.print(f"password changed for {_update(email, password=password)}", highlight=False)


@user_app.command("reset-password")
def user_reset_password(email: str) -> None:
    """Give a user a new generated password, printed once; their web sessions end."""
    generated = user_service.generate_password()
    done = _update(email, password=SecretStr(generated))
    out.print(f"password reset for {done}", highlight=False)
    out.print(f"password: {generated}", highlight=False)


@user_app.command("disable")
def user_disable(email: str) -> None:
    """Disable a user: no log-in, no API token, sessions ended; their queued mail waits."""
    out.print(f"disabled {_update(email, disabled=True)}", highlight=False)


@user_app.command("enable")
def user_enable(email: str) -> None:
    """Enable a disabled user again; their queued mail goes out."""
    out.print(f"enabled {_update(email, disabled=False)}", highlight=False)


@user_app.command("role")
def user_role(
    email: str,
    role: Annotated[str, typer.Argument(help="admin or user.")],
) -> None:
    """Change a user's role (the last active admin keeps theirs)."""
    out.print(f"{_update(email, role=role)} is now {role}", highlight=False)
