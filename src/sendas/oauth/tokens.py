"""Access tokens for signed-in aliases: refreshed shortly before they expire, one refresh
at a time per alias, the rotated refresh token saved every time.

One refresh at a time holds across tasks (an asyncio lock per alias) and across processes
and hosts (the alias row is locked: ``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the
write transaction's ``BEGIN IMMEDIATE`` serializes writers). Whoever gets the lock reads the
row again, so a waiter whose neighbour has just refreshed uses that token instead of
refreshing a second time (which, with rotation, would also burn the new refresh token).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import Alias
from sendas.errors import OAuthError, ReauthRequired
from sendas.oauth.errors import NotConfigured, ProviderError
from sendas.oauth.flow import HTTP_TIMEOUT, SignInResult, _call_token_endpoint
from sendas.oauth.httpx_client import AsyncOAuth2Client
from sendas.oauth.metadata import fetch_metadata
from sendas.oauth.providers import ClientConfig, get_provider, load_client
from sendas.oauth.tokenset import TokenSet, store_tokens
from sendas.secrets import SecretBox
from sendas.smtp.endpoint import TokenProvider

log = logging.getLogger(__name__)

REFRESH_MARGIN = 300.0  # refresh this many seconds before expiry (providers: 1 h tokens)
_REAUTH_HINT = "Sign in again (Reconnect) with the provider for this alias."


@dataclass(frozen=True)
class _Row:
    auth: str
    needs_reauth: bool
    oauth_token_enc: str | None


class AliasTokens:
    """Hands out access tokens for signed-in aliases (one instance per process)."""

    def __init__(
        self, db: Database, box: SecretBox, *, refresh_margin: float = REFRESH_MARGIN
    ) -> None:
        self._db = db
        self._box = box
        self._margin = refresh_margin
        self._locks: dict[int, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"AliasTokens(margin={self._margin})"

    def token_provider(self, alias_id: int) -> TokenProvider:
        """The SMTP layer's ``async (force_refresh) -> access token`` for ``alias_id``.

        ``force_refresh=True`` (the server rejected the token it handed out last) refreshes,
        unless another task has stored a different, fresh token meanwhile.
        """
        handed_out: list[str] = []

        async def provide(force_refresh: bool) -> str:
            rejected = handed_out[-1] if force_refresh and handed_out else None
            token = await self.access_token(
                alias_id, force_refresh=force_refresh, rejected=rejected
            )
            handed_out[:] = [token]
            return token

        return provide

    async def access_token(
        self, alias_id: int, *, force_refresh: bool = False, rejected: str | None = None
    ) -> str:
        """A usable access token for the alias, refreshed when it expires within the margin
        (or when ``force_refresh``; ``rejected`` names the token that was refused, so a
        token someone else refreshed meanwhile is used instead).

        Raises ReauthRequired (not signed in, ``needs_reauth``, or the provider answered
        ``invalid_grant``: the flag is then set), ProviderUnavailable (token endpoint
        unreachable or 5xx: retry later), NotConfigured, ProviderError.
        """
        row = await asyncio.to_thread(self._read, alias_id)
        current = self._usable(row, force_refresh=force_refresh, rejected=rejected)
        if current is not None:
            return current
        lock = self._locks.setdefault(alias_id, asyncio.Lock())
        async with lock:
            return await self._refresh_locked(alias_id, force_refresh, rejected)

    # --- internals -------------------------------------------------------------------------

    def _read(self, alias_id: int) -> _Row:
        with self._db.read() as s:
            return self._select(s, alias_id, lock=False)

    @staticmethod
    def _select(session: Session, alias_id: int, *, lock: bool) -> _Row:
        # Columns only: the Alias entity joins its IMAP account, and PostgreSQL refuses
        # FOR UPDATE on the nullable side of an outer join.
        query = select(Alias.auth, Alias.needs_reauth, Alias.oauth_token_enc).where(
            Alias.id == alias_id
        )
        found = session.execute(query.with_for_update() if lock else query).one_or_none()
        if found is None:
            raise ReauthRequired("the alias no longer exists", step="auth")
        return _Row(found.auth, bool(found.needs_reauth), found.oauth_token_enc)

    def _tokens(self, row: _Row) -> TokenSet:
        if row.auth == "password":
            raise OAuthError("this alias signs in with a password, not a token", step="auth")
        if row.needs_reauth:
            raise ReauthRequired("the alias must sign in again", step="auth", hint=_REAUTH_HINT)
        if not row.oauth_token_enc:
            raise ReauthRequired("the alias has not signed in yet", step="auth", hint=_REAUTH_HINT)
        return TokenSet.decrypt(self._box, row.oauth_token_enc)

    def _usable(self, row: _Row, *, force_refresh: bool, rejected: str | None) -> str | None:
        tokens = self._tokens(row)
        token = tokens.access_token.get_secret_value()
        if tokens.expires_within(self._margin):
            return None
        if force_refresh and (rejected is None or token == rejected):
            return None
        return token

    async def _refresh_locked(
        self, alias_id: int, force_refresh: bool, rejected: str | None
    ) -> str:
        transaction = self._db.write()
        session = await asyncio.to_thread(transaction.__enter__)
        try:
            result = await self._refresh_in(session, alias_id, force_refresh, rejected)
        except BaseException as exc:
            await _exit(transaction, exc)
            raise
        await _exit(transaction, None)
        if isinstance(result, ReauthRequired):
            raise result  # raised only now: the needs_reauth flag is committed
        return result

    async def _refresh_in(
        self, session: Session, alias_id: int, force_refresh: bool, rejected: str | None
    ) -> str | ReauthRequired:
        row = await asyncio.to_thread(self._select, session, alias_id, lock=True)
        current = self._usable(row, force_refresh=force_refresh, rejected=rejected)
        if current is not None:
            return current  # refreshed by someone else while we waited
        tokens = self._tokens(row)
        if tokens.refresh_token is None:
            await asyncio.to_thread(_set_needs_reauth, session, alias_id)
            return ReauthRequired("no refresh token is stored", step="auth", hint=_REAUTH_HINT)
        client = await asyncio.to_thread(load_client, session, tokens.provider, self._box)
        if client is None:
            raise NotConfigured(tokens.provider)
        try:
            fresh = await _refresh_request(client, tokens)
        except ProviderError as exc:
            if exc.error != "invalid_grant":
                raise
            log.warning("alias %s: the provider refused the refresh token: reauth", alias_id)
            await asyncio.to_thread(_set_needs_reauth, session, alias_id)
            return ReauthRequired(
                "the sign-in was revoked or expired", step="auth", hint=_REAUTH_HINT
            )
        new_tokens = tokens.with_refresh(fresh)
        await asyncio.to_thread(_save_tokens, session, alias_id, new_tokens.encrypt(self._box))
        log.info("alias %s: access token refreshed", alias_id)
        return new_tokens.access_token.get_secret_value()


async def _refresh_request(client: ClientConfig, tokens: TokenSet) -> dict[str, Any]:
    """One refresh request through Authlib's client (the new token set as answered)."""
    refresh = tokens.refresh_token
    assert refresh is not None
    extra: dict[str, str] = {}
    if client.provider.refresh_sends_scope and tokens.scope:
        extra["scope"] = tokens.scope  # Microsoft wants the scope repeated
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        meta = await fetch_metadata(http, client.discovery_url)
    async with AsyncOAuth2Client(
        client_id=client.client_id,
        client_secret=client.client_secret.get_secret_value(),
        timeout=HTTP_TIMEOUT,
    ) as oc:
        return await _call_token_endpoint(
            oc.refresh_token(meta.token_endpoint, refresh_token=refresh.get_secret_value(), **extra)
        )


def _set_needs_reauth(session: Session, alias_id: int) -> None:
    session.execute(update(Alias).where(Alias.id == alias_id).values(needs_reauth=True))


def _save_tokens(session: Session, alias_id: int, encrypted: str) -> None:
    session.execute(
        update(Alias)
        .where(Alias.id == alias_id)
        .values(oauth_token_enc=encrypted, needs_reauth=False)
    )


async def _exit(transaction: AbstractContextManager[Session], exc: BaseException | None) -> None:
    """Leave the write transaction in a thread (commit, or roll back on ``exc``)."""
    if exc is None:
        await asyncio.to_thread(transaction.__exit__, None, None, None)
    else:
        await asyncio.to_thread(transaction.__exit__, type(exc), exc, exc.__traceback__)


def apply_sign_in(alias: Alias, result: SignInResult, box: SecretBox) -> bool:
    """Make ``alias`` send as the signed-in account: ``auth`` becomes the provider, server
    and TLS become the provider's (or the registered app's override) and the tokens are
    bound to them, the user name becomes the verified email, the password is cleared, the
    tokens are stored (encrypted) and ``needs_reauth`` is cleared.

    ``from_address`` is set only when empty; returns True when it differs from the signed-in
    email (the caller shows the mismatch and lets the owner choose; never overwrite it
    silently).
    """
    spec = get_provider(result.provider)
    servers = result.servers or spec.servers()
    alias.smtp_host, alias.smtp_port, alias.tls = (
        servers.smtp_host,
        servers.smtp_port,
        servers.smtp_tls,
    )
    alias.oauth_servers = servers.to_json()
    alias.auth = spec.name
    alias.smtp_username = result.email
    alias.smtp_password_enc = None
    alias.allow_plaintext_auth = False
    store_tokens(alias, result.tokens, box)
    if not alias.from_address:
        alias.from_address = result.email
    return alias.from_address.casefold() != result.email.casefold()


def seconds_left(tokens: TokenSet) -> float:
    """How long the access token still lives (for Test Connection's step detail)."""
    return max(0.0, tokens.expires_at - time.time())


__all__ = ["REFRESH_MARGIN", "AliasTokens", "apply_sign_in", "seconds_left"]
