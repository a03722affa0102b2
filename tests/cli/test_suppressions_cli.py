"""`sendas suppressions list|add|remove`, and `sendas campaign send` skipping what is listed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sendas.context import AppContext
from tests.cli.test_campaign_cli import (  # noqa: F401 (fixtures)
    ctx,
    data_dir,
    files,
    run,
    send,
    statuses,
)

USER = ("--user", "alice@example.com")


def test_add_list_and_remove_by_address_or_id(run: Any) -> None:  # noqa: F811 (the fixture)
    r = run("suppressions", "add", *USER, " Ann@Example.org ", "--reason", "asked to stop")
    assert r.exit_code == 0, r.output
    assert "suppressed ann@example.org" in r.stdout
    r = run("suppressions", "add", *USER, "ann@example.org")
    assert r.exit_code == 2
    assert "address" in r.stderr and "already" in r.stderr
    assert run("suppressions", "add", *USER, "not an address").exit_code == 2
    assert run("suppressions", "add", *USER, "ben@example.org").exit_code == 0

    r = run("suppressions", "list", *USER, "--json")
    assert r.exit_code == 0, r.output
    items = json.loads(r.stdout)["items"]
    assert [(e["address"], e["source"]) for e in items] == [
        ("ben@example.org", "manual"),
        ("ann@example.org", "manual"),
    ]
    r = run("suppressions", "list", *USER, "--search", "ann")
    assert "ann@example.org" in r.stdout and "ben@example.org" not in r.stdout
    assert [e["reason"] for e in items] == [None, "asked to stop"]

    assert run("suppressions", "remove", *USER, "ANN@example.org").exit_code == 0
    r = run("suppressions", "remove", *USER, str(items[0]["id"]))
    assert r.exit_code == 0, r.output
    assert "removed ben@example.org" in r.stdout
    assert json.loads(run("suppressions", "list", *USER, "--json").stdout)["items"] == []
    r = run("suppressions", "remove", *USER, "ann@example.org")
    assert r.exit_code == 1
    assert "not found" in r.stderr


def test_campaign_send_skips_and_names_suppressed(
    run: Any,  # noqa: F811 - the imported fixtures
    files: dict[str, Path],  # noqa: F811
    ctx: AppContext,  # noqa: F811
) -> None:
    assert run("suppressions", "add", *USER, "ben@example.org").exit_code == 0
    r = send(run, files, "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "skipped 1 suppressed address(es): ben@example.org" in r.stderr
    assert statuses(ctx) == [("ann@example.org", "queued")]
