"""Reaching the server: resolve, TCP, implicit TLS and STARTTLS, certificates, greeting."""

from __future__ import annotations

import pytest
import trustme

from sendas.errors import (
    MailConnectionError,
    MailTimeoutError,
    TlsError,
)
from sendas.smtp import SmtpSession
from tests.servers.smtpd import SmtpdFactory


async def test_starttls_required_but_not_offered_sends_no_credentials(
    smtpd: SmtpdFactory,
) -> None:
    server = await smtpd("starttls", offer_starttls=False)
    assert server.recorder.script == {}
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint(allow_plaintext_auth=True)).open()
    assert caught.value.step == "starttls"
    assert "STARTTLS" in caught.value.hint
    assert server.recorder.lines_starting(b"AUTH") == []
    assert server.recorder.auth_exchange == []


async def test_untrusted_certificate_fails_at_tls_step(
    smtpd: SmtpdFactory, unknown_ca: trustme.CA
) -> None:
    server = await smtpd("implicit")
    endpoint = server.endpoint(ca_bundle_pem=unknown_ca.cert_pem.bytes().decode())
    with pytest.raises(TlsError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "tls"
    assert "CA certificate" in caught.value.hint
    assert "never switched off" in caught.value.hint
    assert server.recorder.commands == []


async def test_untrusted_certificate_after_starttls_sends_no_credentials(
    smtpd: SmtpdFactory,
) -> None:
    server = await smtpd("starttls")
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint(ca_bundle_pem=None)).open()
    assert caught.value.step == "starttls"
    assert server.recorder.lines_starting(b"AUTH") == []


async def test_certificate_for_another_name_is_refused(
    smtpd: SmtpdFactory, tls_ca: trustme.CA
) -> None:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("mail.other.test").configure_cert(context)
    server = await smtpd("implicit", ssl_context=context)
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint()).open()
    assert "different name" in caught.value.hint


async def test_ssl_cert_file_is_honoured(
    smtpd: SmtpdFactory, tls_ca: trustme.CA, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    bundle = Path(str(tmp_path)) / "ca.pem"
    bundle.write_bytes(tls_ca.cert_pem.bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    server = await smtpd("implicit")
    async with SmtpSession(server.endpoint(ca_bundle_pem=None)) as session:
        assert session.tls_active


async def test_starttls_port_probed_as_implicit_tls_names_the_fix(smtpd: SmtpdFactory) -> None:
    server = await smtpd("starttls")
    with pytest.raises(TlsError) as caught:
        await SmtpSession(server.endpoint(tls="implicit")).open()
    assert caught.value.step == "tls"
    assert "587" in caught.value.hint and "STARTTLS" in caught.value.hint


async def test_never_greeting_server_times_out_at_greeting(silent_server: int) -> None:
    from sendas.smtp import SmtpEndpoint

    endpoint = SmtpEndpoint("127.0.0.1", silent_server, "none", timeout=0.5)
    with pytest.raises(MailTimeoutError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "greeting"
    assert isinstance(caught.value, TimeoutError)
    assert "465" in caught.value.hint


async def test_connection_refused_names_connect_step() -> None:
    import socket

    from sendas.smtp import SmtpEndpoint

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = SmtpEndpoint("127.0.0.1", port, "none", timeout=1)
    with pytest.raises(MailConnectionError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "connect"
    assert "port" in caught.value.hint


async def test_unknown_host_fails_at_resolve() -> None:
    from sendas.smtp import SmtpEndpoint

    endpoint = SmtpEndpoint("no-such-host.invalid", 587, "starttls", timeout=2)
    with pytest.raises(MailConnectionError) as caught:
        await SmtpSession(endpoint).open()
    assert caught.value.step == "resolve"
