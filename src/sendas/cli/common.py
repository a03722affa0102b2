"""What every command group shares: the consoles, the context, input checks, output helpers.

Errors become one line on stderr and an exit code: 1 for a refusal or a missing thing, 2 for
bad input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console

from sendas.config import Settings
from sendas.context import AppContext
from sendas.errors import NotFound, SendasError, ValidationFailed
from sendas.services import users as user_service
from sendas.services.common import Actor
from sendas.services.secret_binding import SERVER_CHANGED, TLS_CHANGED
from sendas.validation import field_problems, problem_text

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

# Options several groups take, spelled the same everywhere.
UserOpt = Annotated[str, typer.Option("--user", "-u", help="Email of the alias's owner.")]
JsonOpt = Annotated[bool, typer.Option("--json")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


@contextmanager
def context(*, migrate: bool = True) -> Iterator[AppContext]:
    """Build the context; turn our errors into one line on stderr and an exit code."""
    try:
        ctx = AppContext.build(Settings(), migrate=migrate)
    except SendasError as exc:
        raise fail(str(exc)) from None
    try:
        yield ctx
    except ValidationFailed as exc:
        raise fail(_problems_text(exc), 2) from None
    except NotFound as exc:
        raise fail(str(exc)) from None
    except SendasError as exc:
        raise fail(str(exc)) from None
    finally:
        ctx.close()


def _problems_text(exc: ValidationFailed) -> str:
    return "; ".join(f"{p.loc[-1]}: {p.msg}{_cli_hint(p.msg)}" for p in exc.problems)


def _cli_hint(msg: str) -> str:
    """How to do at the command line what the message asks for."""
    if msg in (SERVER_CHANGED, TLS_CHANGED):
        return " (give it on standard input with --password-stdin)"
    return ""


def build(model: Callable[..., T], **values: Any) -> T:
    """Validate CLI input with the API's own schemas; unset options are left out."""
    try:
        return model(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise fail(problem_text(field_problems(exc)), 2) from None


def read_secret_stdin() -> SecretStr:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise fail("no password on standard input", 2)
    return SecretStr(value)


def actor_for(ctx: AppContext, email: str) -> Actor:
    with ctx.db.read() as s:
        return Actor.of(user_service.get_user_by_email(s, email))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")
