"""The private Postfix fixture does what the SMTP tests rely on."""

from __future__ import annotations

import smtplib
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.servers.need import need_binary
from tests.servers.postfix import PostfixServer

pytestmark = pytest.mark.postfix


def _message(server: PostfixServer) -> tuple[bytes, bytes]:
    marker = f"<{uuid.uuid4().hex}@sendas.test>".encode()
    raw = (
        b"From: Alice <" + server.from_address.encode() + b">\r\n"
        b"To: bob@example.test\r\n"
        b"Subject: fixture smoke test\r\n"
        b"Message-ID: " + marker + b"\r\n"
        b"\r\n"
        b"Hello through a real Postfix.\r\n"
    )
    return raw, marker


def test_starttls_auth_send_is_delivered(postfix_server: PostfixServer) -> None:
    raw, marker = _message(postfix_server)
    with smtplib.SMTP(postfix_server.host, postfix_server.port, timeout=15) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth"), "AUTH must not be offered before STARTTLS"
        smtp.starttls(context=postfix_server.ssl_context())
        smtp.ehlo()
        assert "PLAIN" in smtp.esmtp_features["auth"].upper()
        smtp.login(postfix_server.username, postfix_server.password)
        refused = smtp.sendmail(postfix_server.from_address, ["bob@example.test"], raw)
        assert refused == {}
    delivered = postfix_server.wait_for(lambda m: marker in m)
    assert len(delivered) == 1
    message = delivered[0]
    assert b"Delivered-To: bob@example.test" in message
    assert b"with ESMTPSA" in message  # submitted over TLS, authenticated
    # The message as submitted follows Postfix's own trace headers (stored with LF endings).
    assert message.endswith(raw.replace(b"\r\n", b"\n"))


def test_relay_needs_auth_and_owned_sender(postfix_server: PostfixServer) -> None:
    raw, _ = _message(postfix_server)
    with smtplib.SMTP(postfix_server.host, postfix_server.port, timeout=15) as smtp:
        smtp.starttls(context=postfix_server.ssl_context())
        with pytest.raises(smtplib.SMTPRecipientsRefused) as unauthenticated:
            smtp.sendmail(postfix_server.from_address, ["bob@example.test"], raw)
        code, reply = unauthenticated.value.recipients["bob@example.test"]
        assert code == 553 or code == 554, reply  # not logged in: not allowed to relay
        smtp.rset()
        smtp.login(postfix_server.username, postfix_server.password)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as other_sender:
            smtp.sendmail("someone-else@example.test", ["bob@example.test"], raw)
        code, reply = other_sender.value.recipients["bob@example.test"]
        assert code == 553 and b"not owned by user" in reply


def test_wrong_password_is_refused(postfix_server: PostfixServer) -> None:
    with smtplib.SMTP(postfix_server.host, postfix_server.port, timeout=15) as smtp:
        smtp.starttls(context=postfix_server.ssl_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login(postfix_server.username, "wrong password")
        assert refused.value.smtp_code == 535


def test_swaks_round_trip(postfix_server: PostfixServer, tmp_path: Path) -> None:
    swaks = need_binary("swaks")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(postfix_server.ca_pem)
    marker = uuid.uuid4().hex
    result = subprocess.run(
        [
            swaks,
            "--server", f"{postfix_server.host}:{postfix_server.port}",
            "--tls", "--tls-verify", "--tls-ca-path", str(ca_file),
            "--auth", "PLAIN",
            "--auth-user", postfix_server.username,
            "--auth-password", postfix_server.password,
            "--from", postfix_server.from_address,
            "--to", "carol@example.test",
            "--header", f"Subject: swaks {marker}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert postfix_server.wait_for(lambda m: marker.encode() in m)
