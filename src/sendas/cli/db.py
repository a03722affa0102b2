"""`sendas db`: apply or revert schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from sendas.cli.common import context, out

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from sendas.db.migrate import current_revision, upgrade

    with context(migrate=False) as ctx:
        upgrade(ctx.db.engine, revision)
        out.print(f"database at revision {current_revision(ctx.db.engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' removes every table)."""
    from sendas.db.migrate import current_revision, downgrade

    with context(migrate=False) as ctx:
        downgrade(ctx.db.engine, revision)
        out.print(f"database at revision {current_revision(ctx.db.engine)}")
