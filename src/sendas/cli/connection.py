"""How the CLI shows a Test Connection result (alias test, imap test, system outgoing test)."""

from __future__ import annotations

from typing import Any

import typer

from sendas.cli.common import out


def print_test_result(result: dict[str, Any]) -> None:
    """Show a Test Connection result; exit 1 when it failed."""
    for step in result.get("steps", []):
        ok = step.get("ok", step.get("status") == "ok")
        mark = "ok " if ok else "FAIL"
        out.print(
            f"  {mark} {step['step']:<12} {step.get('ms', 0):>7.1f} ms  {step.get('detail', '')}",
            highlight=False,
            markup=False,
        )
    if result["status"] == "OK":
        extra = f" (Sent folder: {result['sent_folder']})" if result.get("sent_folder") else ""
        out.print(f"Status: OK{extra}", highlight=False, markup=False)
        return
    out.print(f"Status: FAILED at {result.get('step')}", highlight=False, markup=False)
    if result.get("server_reply"):
        out.print(f"Server said: {result['server_reply']}", highlight=False, markup=False)
    if result.get("hint"):
        out.print(f"What to do: {result['hint']}", highlight=False, markup=False)
    raise typer.Exit(1)
