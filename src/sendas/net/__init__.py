"""Network policy shared by the SMTP and IMAP clients (the TLS context factory)."""

from __future__ import annotations


def host_port(host: str, port: int) -> str:
    """``host:port`` as the settings show it (``[::1]:587`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
