"""Test Connection: walks every step, stops at the first failure, never sends a message."""

from __future__ import annotations

import trustme

from sendas.schemas import ConnectionTestResult, ConnectionTestStep
from sendas.smtp.endpoint import SmtpEndpoint
from sendas.smtp.probe import probe
from tests.servers.smtpd import USER, SmtpdFactory


async def test_probe_walks_every_step_and_sends_no_message(smtpd: SmtpdFactory) -> None:
    server = await smtpd("starttls")
    result = (await probe(server.endpoint(), USER)).model_dump()
    assert result["status"] == "OK"
    steps = [s["name"] for s in result["steps"]]
    assert steps == [
        "resolve",
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "ehlo",
        "auth",
        "mail_from",
        "rcpt_to",
        "rset",
        "quit",
    ]
    assert all(s["ok"] and s["ms"] >= 0 for s in result["steps"])
    assert server.recorder.messages == []
    assert server.recorder.lines_starting(b"DATA") == []
    assert server.recorder.lines_starting(b"MAIL") == [f"MAIL FROM:<{USER}>".encode()]
    assert server.recorder.lines_starting(b"RCPT") == [f"RCPT TO:<{USER}>".encode()]
    assert server.recorder.commands[-2:] == [b"RSET", b"QUIT"]


async def test_probe_stops_at_auth_with_reply_and_hint(smtpd: SmtpdFactory) -> None:
    from pydantic import SecretStr

    server = await smtpd("implicit")
    result = (await probe(server.endpoint(password=SecretStr("nope")), USER)).model_dump()
    assert result["status"] == "FAILED"
    assert result["step"] == "auth"
    assert result["server_reply"].startswith("535")
    assert result["hint"]
    assert result["steps"][-1]["name"] == "auth" and result["steps"][-1]["ok"] is False
    assert server.recorder.lines_starting(b"MAIL") == []
    assert "nope" not in str(result)


async def test_probe_names_greeting_timeout(silent_server: int) -> None:
    endpoint = SmtpEndpoint("127.0.0.1", silent_server, "starttls", timeout=0.5)
    result = (await probe(endpoint, USER)).model_dump()
    assert result["status"] == "FAILED"
    assert result["step"] == "greeting"
    assert "SSL/TLS (implicit)" in result["hint"]
    assert result["steps"][-1]["ms"] >= 400


async def test_probe_wrong_tls_mode_for_port(smtpd: SmtpdFactory) -> None:
    server = await smtpd("starttls")
    result = (await probe(server.endpoint(tls="implicit"), USER)).model_dump()
    assert result["status"] == "FAILED"
    assert result["step"] == "tls"
    assert "587" in result["hint"] and "STARTTLS" in result["hint"]
    assert "wrong version number" in result["steps"][-1]["detail"].lower()


async def test_probe_untrusted_certificate(smtpd: SmtpdFactory, unknown_ca: trustme.CA) -> None:
    server = await smtpd("starttls")
    endpoint = server.endpoint(ca_bundle_pem=unknown_ca.cert_pem.bytes().decode())
    result = (await probe(endpoint, USER)).model_dump()
    assert (result["status"], result["step"]) == ("FAILED", "starttls")
    assert "certificate" in result["hint"]
    assert server.recorder.auth_exchange == []


async def test_probe_rcpt_refused(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit")
    server.recorder.script["RCPT"] = (
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    )
    result = (await probe(server.endpoint(), USER)).model_dump()
    assert (result["status"], result["step"]) == ("FAILED", "rcpt_to")
    assert "Send As" in result["hint"]


def test_results_merge_for_the_imap_part() -> None:
    smtp = ConnectionTestResult(
        status="OK", steps=[ConnectionTestStep(name="connect", ok=True, ms=1.0)]
    )
    imap = ConnectionTestResult(
        status="OK",
        sent_folder="Sent",
        steps=[ConnectionTestStep(name="login", ok=True, ms=2.0, detail="u")],
    )
    merged = smtp.followed_by(imap, "imap_").model_dump()
    assert merged["status"] == "OK" and merged["sent_folder"] == "Sent"
    assert [s["name"] for s in merged["steps"]] == ["connect", "imap_login"]
    # A failing IMAP part names its step with the prefix and carries its reply and hint.
    refused = ConnectionTestResult(
        status="FAILED",
        step="login",
        server_reply="NO [AUTHENTICATIONFAILED]",
        hint="Check the password.",
        steps=[ConnectionTestStep(name="login", ok=False, ms=2.0, detail="refused")],
    )
    failed = smtp.followed_by(refused, "imap_")
    assert (failed.status, failed.step, failed.hint) == (
        "FAILED",
        "imap_login",
        "Check the password.",
    )
    assert [(s.name, s.ok) for s in failed.steps] == [("connect", True), ("imap_login", False)]
