"""Turn stored settings (aliases, IMAP accounts, the database outgoing settings) into the
endpoints the SMTP and IMAP layers connect to, decrypting secrets only here."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from pydantic import SecretStr

from sendas.db.models import Alias, ImapAccount, SystemOutgoing
from sendas.errors import ReauthRequired
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.providers import files_own_sent_copy
from sendas.secrets import SecretBox
from sendas.smtp import AuthKind, SmtpEndpoint, TokenProvider
from sendas.smtp import TlsMode as SmtpTls
from sendas.smtp.endpoint import DETECT_WAIT

TokenProviders = Callable[[int], TokenProvider]
"""alias id -> token provider, for aliases that sign in with Google or Microsoft."""


def smtp_endpoint(
    row: Alias | SystemOutgoing,
    box: SecretBox,
    *,
    timeout: float,
    token_provider: TokenProvider | None = None,
    detect_wait: float = DETECT_WAIT,
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
        detect_wait=detect_wait,
    )


def imap_endpoint(
    acc: ImapAccount, box: SecretBox, *, timeout: float, detect_wait: float = DETECT_WAIT
) -> ImapEndpoint:
    """The IMAP endpoint of an account (an account without a password gets an empty one)."""
    password = box.decrypt(acc.password_enc) if acc.password_enc else SecretStr("")
    return ImapEndpoint.for_account(
        acc,
        password,
        timeout=timeout,
        allow_plaintext_password=acc.allow_plaintext_auth,
        detect_wait=detect_wait,
    )


def _no_token_provider(alias_id: int) -> TokenProvider:
    async def provider(force_refresh: bool) -> str:
        raise ReauthRequired(
            "no sign-in token is available for this alias",
            step="auth",
            hint="Sign in again with Google or Microsoft for this alias.",
        )

    return provider


def alias_endpoint(
    alias: Alias, box: SecretBox, timeout: float, token_providers: TokenProviders | None
) -> SmtpEndpoint:
    """The alias's SMTP endpoint, with a token provider if it signs in with OAuth."""
    provider = None
    if alias.auth != "password":
        provider = (token_providers or _no_token_provider)(alias.id)
    return smtp_endpoint(alias, box, timeout=timeout, token_provider=provider)


def imap_for(
    alias: Alias, box: SecretBox, timeout: float
) -> tuple[ImapEndpoint | None, str | None]:
    """Where the alias's copies to Sent go, or why none is made (the reason is recorded)."""
    if files_own_sent_copy(alias.smtp_host, alias.auth):
        return None, "the provider files its own copy in Sent"
    account: ImapAccount | None = alias.imap_account
    if account is None:
        return None, "the alias has no IMAP account"
    if not account.password_enc:
        return None, "the IMAP account has no password"
    try:
        return imap_endpoint(account, box, timeout=timeout), None
    except ValueError as exc:
        return None, f"the IMAP account cannot be used: {exc}"
