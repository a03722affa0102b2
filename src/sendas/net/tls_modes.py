"""The one name of each encryption mode, for every place a person reads it: the dropdowns,
the hints, the alias card, the CLI's help and the README. The stored values stay
``auto | implicit | starttls | none``."""

from __future__ import annotations

from typing import Final

AUTO: Final = "Automatic"
IMPLICIT: Final = "SSL/TLS (implicit)"
STARTTLS: Final = "STARTTLS"
NONE: Final = "None (Disable SSL/TLS)"

TLS_MODE_LABELS: Final[dict[str, str]] = {
    "auto": AUTO,
    "implicit": IMPLICIT,
    "starttls": STARTTLS,
    "none": NONE,
}

# "Automatic" on a port other than the implicit-TLS one waits this long for a greeting before
# it speaks TLS to a silent server (Test Connection passes SENDAS_TLS_DETECT_WAIT instead).
DETECT_WAIT: Final = 2.5
# The plain ports whose servers always greet first: "Automatic" goes straight to STARTTLS there,
# so a server slow to greet (an anti-spam greeting pause) is never mistaken for a TLS one.
SMTP_GREETING_PORTS: Final = frozenset({25, 587, 2525})
IMAP_GREETING_PORTS: Final = frozenset({143})

CLI_HELP: Final = f"auto ({AUTO}) | implicit ({IMPLICIT}) | starttls ({STARTTLS}) | none ({NONE})."


def tls_label(mode: str | None) -> str:
    """The person-readable name of a stored mode (the value itself when unknown)."""
    return TLS_MODE_LABELS.get(mode or "", mode or "")


def tls_choices(implicit_port: int, starttls_port: int) -> tuple[tuple[str, str], ...]:
    """``(value, label)`` for a dropdown, with the usual ports as a reminder."""
    return (
        ("auto", f"{AUTO} (finds what the server speaks)"),
        ("implicit", f"{IMPLICIT} — usually port {implicit_port}"),
        ("starttls", f"{STARTTLS} — usually port {starttls_port}"),
        ("none", NONE),
    )


SMTP_TLS_CHOICES = tls_choices(465, 587)[:3]
"""The SMTP forms' dropdown: "None" is their Disable SSL/TLS box, with its warning."""
IMAP_TLS_CHOICES = tls_choices(993, 143)
