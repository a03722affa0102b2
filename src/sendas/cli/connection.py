"""How the CLI shows a Test Connection result (alias test, imap test, system outgoing test)."""

from __future__ import annotations

import typer

from sendas.cli.common import out
from sendas.net.tls_modes import tls_label
from sendas.schemas import ConnectionTestResult


def print_test_result(result: ConnectionTestResult) -> None:
    """Show a Test Connection result, one line per step; exit 1 when it failed."""
    for step in result.steps:
        mark = "ok  " if step.ok else "FAIL"
        out.print(
            f"  {mark} {step.name:<14} {step.ms:>7.1f} ms  {step.detail}",
            highlight=False,
            markup=False,
        )
    if result.tls_found:
        out.print(f"Encryption found: {tls_label(result.tls_found)}", highlight=False, markup=False)
    if result.ok:
        extra = f" (Sent folder: {result.sent_folder})" if result.sent_folder else ""
        out.print(f"Status: OK{extra}", highlight=False, markup=False)
        return
    out.print(f"Status: FAILED at {result.step}", highlight=False, markup=False)
    if result.server_reply:
        out.print(f"Server said: {result.server_reply}", highlight=False, markup=False)
    if result.hint:
        out.print(f"What to do: {result.hint}", highlight=False, markup=False)
    raise typer.Exit(1)
