"""IMAP failures in plain words: each names its step and says what to do."""

from __future__ import annotations

import ssl

from pydantic import SecretStr

from sendas.errors import AuthError, ReplyError, TlsError
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.replies import append_refused, login_refused, response_code, tls_failure


def testtls_failure_hints() -> None:
    ep = ImapEndpoint("mail.example.com", 993, "u", SecretStr("p"))
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.verify_code = 62
    mismatch.verify_message = "Hostname mismatch, certificate is not valid for 'mail.example.com'."
    error = tls_failure(mismatch, "tls", ep)
    assert error.step == "tls" and "not valid for the name" in error.hint
    expired = ssl.SSLCertVerificationError(1, "certificate verify failed")
    expired.verify_code = 10
    expired.verify_message = "certificate has expired"
    assert "expired" in tls_failure(expired, "tls", ep).hint
    assert "993" in tls_failure(TimeoutError(), "tls", ep).hint


def test_login_refusals_by_response_code() -> None:
    ep = ImapEndpoint("mail.example.com", 993, "u", SecretStr("p"))
    assert response_code(" [AUTHENTICATIONFAILED] no") == "AUTHENTICATIONFAILED"
    privacy = login_refused("[PRIVACYREQUIRED] TLS first", ep)
    assert isinstance(privacy, TlsError) and "TLS" in privacy.hint
    busy = login_refused("[UNAVAILABLE] try later", ep)
    assert isinstance(busy, ReplyError) and busy.kind == "transient"
    wrong = login_refused("[AUTHENTICATIONFAILED] Authentication failed.", ep)
    assert isinstance(wrong, AuthError) and "user name or password" in wrong.hint
    gmail = login_refused(
        "[AUTHENTICATIONFAILED] no", ImapEndpoint("imap.gmail.com", 993, "u", SecretStr("p"))
    )
    assert "app password" in gmail.hint
    assert wrong.server_reply == "[AUTHENTICATIONFAILED] Authentication failed."


def test_append_refusals_by_response_code() -> None:
    full = append_refused("[OVERQUOTA] Quota exceeded", "Sent")
    assert (full.kind, full.step) == ("quota", "append") and "full" in full.hint
    missing = append_refused("[TRYCREATE] no such mailbox", "Sent")
    assert missing.kind == "permanent" and "'Sent' does not exist" in missing.hint
