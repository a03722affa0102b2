"""A stored password goes only to the server it was saved for.

The password and the place it is sent to (host, port, TLS mode, plaintext permission, CA
bundle) are written together; changing where it would go without typing it again is
refused, so a stolen session cannot point a saved password at a server it controls.
"""

from __future__ import annotations

from dataclasses import dataclass

from sendas.errors import FieldProblem

SERVER_CHANGED = "the server changed: enter the password again"
TLS_CHANGED = "the TLS settings changed: enter the password again"


@dataclass(frozen=True)
class Destination:
    """Where a stored password would be sent, as stored with it."""

    host: str
    port: int
    tls: str
    allow_plaintext_auth: bool
    ca_bundle: str | None

    @classmethod
    def of(
        cls, host: str | None, port: int | None, tls: str, plaintext: bool, ca: str | None
    ) -> Destination:
        # Host names are case-insensitive and may end in a dot; the same server is the same.
        return cls((host or "").lower().rstrip("."), port or 0, tls, bool(plaintext), ca or None)


def rebinding_problem(before: Destination, after: Destination, field: str) -> FieldProblem | None:
    """The 422 entry for ``field`` when a stored password would go somewhere new, else None.

    Clearing the server (no host) sends nothing, so it needs no password.
    """
    if not after.host or before == after:
        return None
    if (before.host, before.port) != (after.host, after.port):
        return FieldProblem(("body", field), SERVER_CHANGED)
    return FieldProblem(("body", field), TLS_CHANGED)
