"""Turn stored settings (aliases, IMAP accounts, the database outgoing settings) into the
endpoints the SMTP and IMAP layers connect to, decrypting secrets only here."""

from __future__ import annotations

from typing import cast

from pydantic import SecretStr

from sendas.db.models import Alias, ImapAccount, SystemOutgoing
from sendas.imap.endpoint import ImapEndpoint
from sendas.secrets import SecretBox
from sendas.smtp import AuthKind, SmtpEndpoint, TokenProvider
from sendas.smtp import TlsMode as SmtpTls


def smtp_endpoint(
    row: Alias | SystemOutgoing,
    box: SecretBox,
    *,
    timeout: float,
    token_provider: TokenProvider | None = None,
) -> SmtpEndpoint:
    """The SMTP endpoint of an alias or of the database outgoing settings."""
    auth = row.auth if isinstance(row, Alias) else "password"
    password = box.decrypt(row.smtp_password_enc) if row.smtp_password_enc else None
    username = row.smtp_username
    if auth != "password":
        password = None
        username = username or row.from_address
    return SmtpEndpoint(
        host=row.smtp_host,
        port=row.smtp_port,
        tls=cast(SmtpTls, row.tls),
        username=username,
        password=password if username else None,
        auth=cast(AuthKind, auth),
        token_provider=token_provider,
        ca_bundle_pem=row.ca_bundle or None,
        allow_plaintext_auth=row.allow_plaintext_auth,
        timeout=timeout,
    )


def imap_endpoint(acc: ImapAccount, box: SecretBox, *, timeout: float) -> ImapEndpoint:
    """The IMAP endpoint of an account (an account without a password gets an empty one)."""
    password = box.decrypt(acc.password_enc) if acc.password_enc else SecretStr("")
    return ImapEndpoint.for_account(
        acc, password, timeout=timeout, allow_plaintext_password=acc.allow_plaintext_auth
    )
