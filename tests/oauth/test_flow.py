"""The authorization code flow against a real authorization server: the start URL, the
whole flow through the consent page, and every refusal."""

from __future__ import annotations

import dataclasses
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from sendas.context import AppContext
from sendas.oauth import (
    AccessDenied,
    IdTokenInvalid,
    InvalidState,
    ProviderUnavailable,
    finish_sign_in,
    start_sign_in,
)
from sendas.oauth.providers import GOOGLE, MICROSOFT
from tests.oauth.conftest import REDIRECT_URI, USER_EMAIL, consent, register, sign_in
from tests.servers.oauth_server import TENANT_ID, OAuthServerFactory


@pytest.mark.parametrize("kind", ["google", "microsoft"])
async def test_start_gives_a_pkce_url_with_state_and_nonce(
    ctx: AppContext, oauth_server: OAuthServerFactory, kind: str
) -> None:
    server = oauth_server(kind)
    client = register(ctx.db, ctx.secrets, server)
    redirect = REDIRECT_URI.format(provider=kind)
    url, pending = await start_sign_in(
        client, redirect_uri=redirect, user_id=7, alias_id=3, imap=True
    )
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{server.base_url}/authorize"
    assert query["response_type"] == "code"
    assert query["client_id"] == "sendas-test.apps.example"
    assert query["redirect_uri"] == redirect
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43  # base64url of a SHA-256 digest
    assert query["code_challenge"] != pending.code_verifier.get_secret_value()
    assert query["state"] == pending.state and len(pending.state) >= 32
    assert query["nonce"] == pending.nonce and pending.nonce != pending.state
    expected = (GOOGLE if kind == "google" else MICROSOFT).scope_list(imap=True)
    assert query["scope"].split() == expected
    if kind == "microsoft":
        assert "https://outlook.office.com/IMAP.AccessAsUser.All" in expected
        assert "offline_access" in expected
    else:
        assert query["access_type"] == "offline"
    assert (pending.user_id, pending.alias_id, pending.provider) == (7, 3, kind)
    assert "state" not in repr(pending) and pending.code_verifier.get_secret_value() not in repr(
        pending
    )
    # Each start is new: another state, nonce and verifier.
    _, again = await start_sign_in(client, redirect_uri=redirect, user_id=7, alias_id=3)
    assert again.state != pending.state and again.nonce != pending.nonce


@pytest.mark.parametrize("kind", ["google", "microsoft"])
async def test_the_whole_flow_gives_the_verified_email_and_tokens(
    ctx: AppContext, oauth_server: OAuthServerFactory, kind: str
) -> None:
    server = oauth_server(kind)
    client = register(ctx.db, ctx.secrets, server)
    result = await sign_in(client)
    assert result.email == USER_EMAIL
    assert result.provider == kind
    tokens = result.tokens
    assert server.is_active(tokens.access_token.get_secret_value())
    assert tokens.refresh_token is not None
    assert server.refresh_token_works(tokens.refresh_token.get_secret_value())
    assert tokens.expires_at > time.time() + 3000
    assert result.tenant_id == (TENANT_ID if kind == "microsoft" else None)
    assert tokens.access_token.get_secret_value() not in repr(tokens)


async def test_deny_is_access_denied(ctx: AppContext, oauth_server: OAuthServerFactory) -> None:
    server = oauth_server("google")
    client = register(ctx.db, ctx.secrets, server)
    url, pending = await start_sign_in(
        client, redirect_uri=REDIRECT_URI.format(provider="google"), user_id=1, alias_id=None
    )
    params = await consent(url, "deny")
    assert params["error"] == "access_denied"
    with pytest.raises(AccessDenied):
        await finish_sign_in(client, pending, params)
    assert server.token_requests == 0


async def test_wrong_or_expired_state_is_refused(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("google")
    client = register(ctx.db, ctx.secrets, server)
    redirect = REDIRECT_URI.format(provider="google")
    url, pending = await start_sign_in(client, redirect_uri=redirect, user_id=1, alias_id=None)
    params = await consent(url)
    with pytest.raises(InvalidState):
        await finish_sign_in(client, pending, {**params, "state": "forged"})
    with pytest.raises(InvalidState):
        await finish_sign_in(client, pending, {k: v for k, v in params.items() if k != "state"})
    expired = dataclasses.replace(pending, expires_at=time.time() - 1)
    with pytest.raises(InvalidState):
        await finish_sign_in(client, expired, params)
    assert server.token_requests == 0  # refused before the code was used


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("id_token_issuer", "issuer"),
        ("id_token_audience", "audience"),
        ("id_token_signature", "signature"),
        ("id_token_expired", "expired"),
        ("id_token_nonce", "nonce"),
    ],
)
@pytest.mark.parametrize("kind", ["google", "microsoft"])
async def test_a_bad_id_token_is_refused(
    ctx: AppContext, oauth_server: OAuthServerFactory, kind: str, failure: str, reason: str
) -> None:
    server = oauth_server(kind)
    client = register(ctx.db, ctx.secrets, server)
    server.failure = failure  # type: ignore[assignment]
    with pytest.raises(IdTokenInvalid) as caught:
        await sign_in(client)
    assert caught.value.reason == reason


async def test_token_endpoint_down_at_exchange_is_unavailable(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("microsoft")
    client = register(ctx.db, ctx.secrets, server)
    server.failure = "token_503"
    with pytest.raises(ProviderUnavailable) as caught:
        await sign_in(client)
    assert caught.value.status == 503
