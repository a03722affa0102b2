"""The SMTP fields shared by the alias form and the admin's outgoing settings."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from sendas.web.smtp_form import pacing_input, tls_input


def test_disable_tls_is_tls_none_and_only_then_allows_plaintext() -> None:
    form = FormData({"disable_tls": "on", "tls": "starttls", "allow_plaintext_auth": "on"})
    assert tls_input(form) == {"tls": "none", "allow_plaintext_auth": True}
    form = FormData({"tls": "starttls", "allow_plaintext_auth": "on"})
    assert tls_input(form) == {"tls": "starttls", "allow_plaintext_auth": False}
    assert tls_input(FormData({}))["tls"] == "auto"


def test_ca_bundle_is_kept_replaced_or_cleared() -> None:
    assert "ca_bundle" not in tls_input(FormData({"ca_bundle": "  "}))
    assert tls_input(FormData({"ca_bundle": " PEM \n"}))["ca_bundle"] == "PEM"
    assert tls_input(FormData({"clear_ca_bundle": "on"}))["ca_bundle"] is None


def test_pacing_values_or_one_problem_per_field() -> None:
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    pacing_input(FormData({"delay_ms": "2,500", "max_connections": ""}), data, errors)
    assert data == {"delay_ms": 2500, "max_connections": 1} and errors == {}

    data, errors = {}, {}
    pacing_input(FormData({"delay_ms": "soon", "max_connections": "many"}), data, errors)
    assert data == {}
    assert set(errors) == {"delay_ms", "max_connections"}
    assert "milliseconds" in errors["delay_ms"]
