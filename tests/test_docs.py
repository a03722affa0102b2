"""Every setting and every CLI command is documented in the README."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer.main import get_command

from sendas.cli import app
from sendas.config import Settings

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_setting_is_documented():
    for name in Settings.model_fields:
        assert f"SENDAS_{name.upper()}" in README, name


def command_paths(command: Any, path: tuple[str, ...] = ("sendas",)) -> Iterator[str]:
    """`sendas serve`, `sendas system outgoing show`, ...: every command that runs something.

    Groups have `commands` (click's Group, or the copy of click that newer Typer ships)."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(path)
        return
    for name, sub in subcommands.items():
        yield from command_paths(sub, (*path, name))


def test_every_command_is_documented():
    paths = list(command_paths(get_command(app)))
    # Sanity: the walk reaches nested groups, so a broken walk cannot pass by finding nothing.
    assert "sendas system outgoing show" in paths and len(paths) > 20, paths
    # A whole word: `sendas campaign send` is not documented by `sendas campaign sender`.
    missing = [p for p in paths if not re.search(re.escape(p) + r"(?![\w-])", README)]
    assert not missing, f"commands missing from README.md: {', '.join(missing)}"
