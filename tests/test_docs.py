"""Every setting and every CLI command is documented in the README."""

from __future__ import annotations

from pathlib import Path

from typer.main import get_command

from sendas.cli import app
from sendas.config import Settings

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_setting_is_documented():
    for name in Settings.model_fields:
        assert f"SENDAS_{name.upper()}" in README, name


def test_every_top_level_command_is_documented():
    group = get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        assert f"sendas {name}" in README, name
