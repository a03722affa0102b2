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
from sendas.net.policy import OutboundPolicy
from sendas.net.tls_modes import DETECT_WAIT
from sendas.oauth.providers import BoundServers
from sendas.secrets import SecretBox
from sendas.smtp import AuthKind, SmtpEndpoint, TokenProvider
from sendas.smtp import TlsMode as SmtpTls

TokenProviders = Callable[[int], TokenProvider]
"""alias id -> token provider, for aliases that sign in with Google or Microsoft."""


def smtp_endpoint(
    row: Alias | SystemOutgoing,
    box: SecretBox,
    *,
    timeout: float,
    outbound: OutboundPolicy | None,
    token_provider: TokenProvider | None = None,
    detect_wait: float = DETECT_WAIT,
) -> SmtpEndpoint:
    """The SMTP endpoint of an alias or of the database outgoing settings.

    ``outbound`` is the settings' policy for an alias; the database outgoing settings
    (admin-only) are exempt and pass None.
    """
    auth = row.auth if isinstance(row, Alias) else "password"
    if isinstance(row, Alias) and token_provider is not None:
        token_provider = _bound_smtp(row, token_provider)
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
        outbound=outbound,
        detect_wait=detect_wait,
    )


def imap_endpoint(
    acc: ImapAccount,
    box: SecretBox,
    *,
    timeout: float,
    outbound: OutboundPolicy,
    token_provider: TokenProvider | None = None,
    detect_wait: float = DETECT_WAIT,
) -> ImapEndpoint:
    """The IMAP endpoint of an account (an account without a password gets an empty one;
    with ``token_provider`` it signs in with XOAUTH2), checked against the settings'
    outbound policy."""
    password = box.decrypt(acc.password_enc) if acc.password_enc else SecretStr("")
    return ImapEndpoint.for_account(
        acc,
        password,
        timeout=timeout,
        allow_plaintext_password=acc.allow_plaintext_auth,
        token_provider=token_provider,
        outbound=outbound,
        detect_wait=detect_wait,
    )


def token_servers(alias: Alias) -> BoundServers:
    """The servers a signed-in alias's tokens may be sent to (fixed at sign-in)."""
    return BoundServers.of_alias(alias.auth, alias.oauth_servers)


def token_server_problem(alias: Alias) -> str | None:
    """Why the alias's token must not go to its SMTP server, or None when it may."""
    servers = token_servers(alias)
    if servers.smtp_allows(alias.smtp_host, alias.smtp_port, alias.tls):
        return None
    return servers.refusal()


def _bound_smtp(alias: Alias, provider: TokenProvider) -> TokenProvider:
    """The backstop: a token provider that refuses to hand a token out for any server but
    the one the sign-in bound it to (whatever path changed the alias's server)."""
    problem = token_server_problem(alias)
    if problem is None:
        return provider

    async def refused(force_refresh: bool) -> str:
        raise ReauthRequired(
            f"the token was not sent: {problem}",
            step="auth",
            hint="Sign in again for this alias (its server becomes the provider's again).",
        )

    return refused


def check_imap_token_server(alias: Alias, account: ImapAccount) -> None:
    """The backstop for IMAP: the alias's token goes only to the provider's IMAP server.
    Raises ValueError naming the problem."""
    servers = token_servers(alias)
    if not servers.imap_allows(account.imap_host, account.imap_port, account.tls):
        raise ValueError(
            f"the sign-in token goes only to {servers.label}'s IMAP server "
            f"({servers.imap_host}:{servers.imap_port}), not to this account's; "
            "give the IMAP account a password instead"
        )


def signed_in_email(alias: Alias) -> str:
    """The address a signed-in alias's tokens belong to (set from the verified ID token)."""
    return alias.smtp_username or alias.from_address


def imap_uses_alias_token(alias: Alias, account: ImapAccount | None) -> bool:
    """The rule for IMAP with Sign in with Google/Microsoft: an IMAP account linked to a
    signed-in alias logs in with XOAUTH2 and the alias's access token when it has no password
    and its user name is the signed-in address (case-insensitive). An account with a password
    keeps using it (e.g. another mailbox, or a server that takes no tokens)."""
    return (
        account is not None
        and alias.auth != "password"
        and not account.password_enc
        and bool(account.username)
        and account.username.casefold() == signed_in_email(alias).casefold()
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
    alias: Alias,
    box: SecretBox,
    timeout: float,
    token_providers: TokenProviders | None,
    outbound: OutboundPolicy,
) -> SmtpEndpoint:
    """The alias's SMTP endpoint, with a token provider if it signs in with OAuth."""
    provider = None
    if alias.auth != "password":
        provider = (token_providers or _no_token_provider)(alias.id)
    return smtp_endpoint(alias, box, timeout=timeout, outbound=outbound, token_provider=provider)


def alias_imap_endpoint(
    alias: Alias,
    account: ImapAccount,
    box: SecretBox,
    timeout: float,
    token_providers: TokenProviders | None,
    outbound: OutboundPolicy,
) -> ImapEndpoint:
    """The endpoint of ``account`` used on behalf of ``alias``: XOAUTH2 with the alias's
    token under :func:`imap_uses_alias_token`, the account's password otherwise.
    Raises ValueError for a malformed account setting or a token not meant for its server."""
    provider = None
    if imap_uses_alias_token(alias, account):
        check_imap_token_server(alias, account)
        provider = (token_providers or _no_token_provider)(alias.id)
    return imap_endpoint(account, box, timeout=timeout, outbound=outbound, token_provider=provider)


def imap_for(
    alias: Alias,
    box: SecretBox,
    timeout: float,
    outbound: OutboundPolicy,
    token_providers: TokenProviders | None = None,
) -> tuple[ImapEndpoint | None, str | None]:
    """Where the alias's copies to Sent go, or why none is made (the reason is recorded)."""
    if files_own_sent_copy(alias.smtp_host):
        return None, "the provider files its own copy in Sent"
    account: ImapAccount | None = alias.imap_account
    if account is None:
        return None, "the alias has no IMAP account"
    if not account.password_enc and not imap_uses_alias_token(alias, account):
        return None, "the IMAP account has no password"
    try:
        endpoint = alias_imap_endpoint(alias, account, box, timeout, token_providers, outbound)
        return endpoint, None
    except ValueError as exc:
        return None, f"the IMAP account cannot be used: {exc}"
