"""The SMTP fields an alias's form and the admin's outgoing settings share: TLS (with the
Disable SSL/TLS box and the CA bundle) and pacing (delay, connections)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from sendas.schemas import parse_delay_ms, parse_max_connections
from sendas.web.deps import checked, raw_text, text


def tls_input(form: FormData) -> dict[str, Any]:
    """TLS mode, plaintext permission and CA bundle from the form: the Disable SSL/TLS box
    is tls "none"; an empty CA field keeps the stored bundle unless "clear" is ticked."""
    tls = "none" if checked(form, "disable_tls") else (text(form, "tls") or "auto")
    data: dict[str, Any] = {
        "tls": tls,
        "allow_plaintext_auth": checked(form, "allow_plaintext_auth") and tls == "none",
    }
    ca = raw_text(form, "ca_bundle").strip()
    if ca:
        data["ca_bundle"] = ca
    elif checked(form, "clear_ca_bundle"):
        data["ca_bundle"] = None
    return data


def pacing_input(form: FormData, data: dict[str, Any], errors: dict[str, str]) -> None:
    """``delay_ms`` and ``max_connections`` into ``data``, or what is wrong with them into
    ``errors`` (the boxes take grouped digits and may be left empty)."""
    parsers = {"delay_ms": parse_delay_ms, "max_connections": parse_max_connections}
    for name, parse in parsers.items():
        try:
            data[name] = parse(text(form, name))
        except ValueError as exc:
            errors[name] = str(exc)
