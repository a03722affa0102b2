"""'Automatic' encryption finds what the server speaks on any port; a wrong explicit mode
fails at its step with a hint naming the right one."""

from __future__ import annotations

from sendas.net.tls_modes import AUTO, IMPLICIT, STARTTLS
from sendas.smtp.probe import probe
from tests.servers.smtpd import USER, SmtpdFactory


async def test_auto_speaks_tls_to_a_silent_server_on_any_port(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    assert server.port != 465
    result = await probe(server.endpoint(tls="auto", detect_wait=0.3), USER)
    assert result.status == "OK", result
    assert result.tls_found == "implicit"
    steps = {s.name: s.detail for s in result.steps}
    assert "tls" in steps and "starttls" not in steps
    assert steps["tls"].startswith(f"{IMPLICIT} (the server was silent after connect)")
    assert server.recorder.lines_starting(b"STARTTLS") == []
    assert server.recorder.lines_starting(b"RCPT") == [f"RCPT TO:<{USER}>".encode()]


async def test_auto_uses_starttls_when_the_server_greets(smtpd: SmtpdFactory) -> None:
    server = await smtpd("starttls")
    result = await probe(server.endpoint(tls="auto", detect_wait=0.3), USER)
    assert result.status == "OK", result
    assert result.tls_found == "starttls"
    steps = {s.name: s.detail for s in result.steps}
    assert steps["starttls"].startswith(STARTTLS)
    assert server.recorder.lines_starting(b"STARTTLS") == [b"STARTTLS"]


async def test_auto_refuses_the_password_when_a_greeting_server_offers_no_starttls(
    smtpd: SmtpdFactory,
) -> None:
    server = await smtpd("starttls", offer_starttls=False)
    result = await probe(server.endpoint(tls="auto", detect_wait=0.3), USER)
    assert result.status == "FAILED"
    assert result.step == "starttls"
    assert server.recorder.lines_starting(b"AUTH") == []


async def test_starttls_against_an_implicit_tls_port_names_the_right_mode(
    smtpd: SmtpdFactory,
) -> None:
    server = await smtpd("implicit")
    result = await probe(server.endpoint(tls="starttls", timeout=0.5), USER)
    assert result.status == "FAILED"
    assert result.step == "greeting"
    assert f"'{IMPLICIT}'" in result.hint and AUTO in result.hint


async def test_implicit_against_a_plain_greeting_names_the_right_mode(
    smtpd: SmtpdFactory,
) -> None:
    server = await smtpd("starttls")
    result = await probe(server.endpoint(tls="implicit", timeout=0.5), USER)
    assert result.status == "FAILED"
    assert result.step == "tls"
    assert f"'{STARTTLS}'" in result.hint and "plain text" in result.hint
