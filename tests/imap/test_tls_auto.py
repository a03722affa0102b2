"""'Automatic' encryption against a real Dovecot on non-standard ports: a silent implicit-TLS
listener gets TLS, a greeting listener STARTTLS; a wrong explicit mode names the right one."""

from __future__ import annotations

import pytest

from sendas.imap import probe_imap
from sendas.net.tls_modes import AUTO, IMPLICIT, STARTTLS
from tests.imap.test_dovecot import endpoint
from tests.servers.dovecot import DovecotServer

pytestmark = pytest.mark.dovecot


async def test_auto_finds_implicit_tls_on_a_non_standard_port(
    dovecot_server: DovecotServer,
) -> None:
    assert dovecot_server.imaps_port != 993
    ep = endpoint(dovecot_server, dovecot_server.special, tls="auto", detect_wait=0.5)
    result = await probe_imap(ep)
    assert result.status == "OK", result
    assert result.tls_found == "implicit"
    assert result.sent_folder == "Sent Items"
    tls_step = next(s for s in result.steps if s.name == "tls")
    assert tls_step.detail == f"{IMPLICIT} (the server was silent after connect)"


async def test_auto_finds_starttls_on_a_non_standard_port(dovecot_server: DovecotServer) -> None:
    assert dovecot_server.imap_port != 143
    ep = endpoint(
        dovecot_server, dovecot_server.special, implicit=False, tls="auto", detect_wait=2.0
    )
    result = await probe_imap(ep)
    assert result.status == "OK", result
    assert result.tls_found == "starttls"
    assert next(s for s in result.steps if s.name == "tls").detail == STARTTLS


async def test_implicit_against_the_starttls_port_names_the_right_mode(
    dovecot_server: DovecotServer,
) -> None:
    ep = endpoint(dovecot_server, dovecot_server.special, port=dovecot_server.imap_port, timeout=1)
    result = await probe_imap(ep)
    assert (result.status, result.step) == ("FAILED", "tls")
    assert f"'{STARTTLS}'" in result.hint and AUTO in result.hint
