"""The authorization code flow with PKCE (S256), a one-time ``state`` and an OpenID Connect
``nonce``, through Authlib's httpx client.

``start_sign_in`` gives the URL to send the browser to and a :class:`PendingAuthorization`
the caller keeps server-side (see :mod:`sendas.oauth.pending`); ``finish_sign_in`` takes
that record and the callback's query parameters, exchanges the code, validates the ID token
(signature against the provider's JWKS, issuer, audience, expiry, nonce) and returns the
verified email with the token set.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError as AuthlibOAuthError
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingKeyError,
)
from joserfc.jwk import KeySet
from pydantic import SecretStr

from sendas.oauth.errors import (
    AccessDenied,
    IdTokenInvalid,
    InvalidState,
    ProviderError,
    ProviderUnavailable,
)
from sendas.oauth.httpx_client import AsyncOAuth2Client
from sendas.oauth.metadata import fetch_jwks, fetch_metadata
from sendas.oauth.providers import TENANT_PLACEHOLDER, BoundServers, ClientConfig, ProviderName
from sendas.oauth.tokenset import TokenSet, expires_at

PENDING_TTL = 600.0  # seconds a started sign-in may take
ID_TOKEN_LEEWAY = 60  # clock skew allowed on exp/iat
HTTP_TIMEOUT = 15.0


@dataclass(frozen=True)
class PendingAuthorization:
    """A started sign-in, kept server-side until its callback. Used once.

    ``user_id`` and ``alias_id`` (``None``: a new alias) bind it to who started it; the
    callback handler must check them against the session. The repr shows no secret.
    """

    provider: ProviderName
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: SecretStr = field(repr=False)
    redirect_uri: str
    user_id: int
    alias_id: int | None
    imap: bool
    expires_at: float

    def is_expired(self, *, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


@dataclass(frozen=True)
class SignInResult:
    """A finished sign-in: the provider's verified email for the account and its tokens."""

    provider: ProviderName
    email: str
    subject: str
    tenant_id: str | None
    tokens: TokenSet
    # Where the tokens may go: the registered app's servers at the time of the sign-in.
    servers: BoundServers | None = None


def _oauth_client(client: ClientConfig, redirect_uri: str, scope: str) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=client.client_id,
        client_secret=client.client_secret.get_secret_value(),
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT,
    )


async def start_sign_in(
    client: ClientConfig,
    *,
    redirect_uri: str,
    user_id: int,
    alias_id: int | None,
    imap: bool = False,
    ttl: float = PENDING_TTL,
) -> tuple[str, PendingAuthorization]:
    """The provider's authorization URL and the pending record to keep server-side.

    The URL carries ``code_challenge`` (S256 of a fresh verifier), a random ``state`` and
    ``nonce``, and the provider's scopes (plus IMAP's with ``imap``). Raises
    ProviderUnavailable / ProviderError when the OpenID configuration cannot be read.
    """
    spec = client.provider
    scope = " ".join(spec.scope_list(imap=imap))
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43-128
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        meta = await fetch_metadata(http, client.discovery_url)
    async with _oauth_client(client, redirect_uri, scope) as oc:
        url, _ = oc.create_authorization_url(
            meta.authorization_endpoint,
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            **dict(spec.authorize_params),
        )
    pending = PendingAuthorization(
        provider=spec.name,
        state=state,
        nonce=nonce,
        code_verifier=SecretStr(verifier),
        redirect_uri=redirect_uri,
        user_id=user_id,
        alias_id=alias_id,
        imap=imap,
        expires_at=time.time() + ttl,
    )
    return str(url), pending


async def finish_sign_in(
    client: ClientConfig, pending: PendingAuthorization, params: Mapping[str, str]
) -> SignInResult:
    """Complete the sign-in from the callback's query parameters.

    Raises InvalidState (state differs from the pending one, or it expired), AccessDenied
    (the user declined), ProviderError (any other OAuth error, or a refused code),
    ProviderUnavailable (token endpoint unreachable or 5xx), IdTokenInvalid.
    """
    if not secrets.compare_digest(params.get("state", ""), pending.state):
        raise InvalidState("the sign-in answer does not match the request")
    if pending.is_expired():
        raise InvalidState("the sign-in request expired")
    if pending.provider != client.provider.name:
        raise InvalidState("the sign-in request was for another provider")
    error = params.get("error")
    if error == "access_denied":
        raise AccessDenied()
    if error:
        raise ProviderError(error, params.get("error_description", ""))
    code = params.get("code")
    if not code:
        raise ProviderError("invalid_request", "the answer carries no authorization code")

    spec = client.provider
    scope = " ".join(spec.scope_list(imap=pending.imap))
    async with (
        httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http,
        _oauth_client(client, pending.redirect_uri, scope) as oc,
    ):
        meta = await fetch_metadata(http, client.discovery_url)
        now = time.time()
        token = await _call_token_endpoint(
            oc.fetch_token(
                meta.token_endpoint,
                code=code,
                code_verifier=pending.code_verifier.get_secret_value(),
            )
        )
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise IdTokenInvalid("malformed", "the provider returned no ID token")
        claims = await _verified_claims(http, meta.jwks_uri, meta.issuer, id_token, client, pending)

    email = _verified_email(claims, client)
    refresh = token.get("refresh_token")
    tokens = TokenSet(
        provider=spec.name,
        email=email,
        subject=str(claims.get("sub", "")),
        access_token=SecretStr(str(token["access_token"])),
        refresh_token=SecretStr(str(refresh)) if refresh else None,
        expires_at=expires_at(dict(token), now=now),
        scope=str(token.get("scope") or scope),
        tenant_id=claims.get("tid"),
    )
    return SignInResult(spec.name, email, tokens.subject, tokens.tenant_id, tokens, client.servers)


async def _call_token_endpoint(call: Any) -> dict[str, Any]:
    """Await an Authlib token call, turning its failures into sendas errors."""
    try:
        token = await call
    except AuthlibOAuthError as exc:
        raise ProviderError(str(exc.error or "error"), str(exc.description or "")) from None
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status >= 500:
            raise ProviderUnavailable(
                f"the token endpoint answered {status}", status=status
            ) from None
        raise ProviderError("http_error", f"the token endpoint answered {status}") from None
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(
            f"the token endpoint could not be reached ({type(exc).__name__})"
        ) from None
    except ValueError:
        raise ProviderError("invalid_response", "the token endpoint answered no JSON") from None
    return dict(token)


async def _verified_claims(
    http: httpx.AsyncClient,
    jwks_uri: str,
    issuer: str,
    id_token: str,
    client: ClientConfig,
    pending: PendingAuthorization,
) -> dict[str, Any]:
    keys = await fetch_jwks(http, jwks_uri)
    try:
        return validate_id_token(
            id_token, keys, issuer=issuer, client_id=client.client_id, nonce=pending.nonce
        )
    except IdTokenInvalid as exc:
        if exc.reason != "signature":
            raise
    # The provider may have rotated its keys since they were cached: fetch them once more.
    keys = await fetch_jwks(http, jwks_uri, fresh=True)
    return validate_id_token(
        id_token, keys, issuer=issuer, client_id=client.client_id, nonce=pending.nonce
    )


def validate_id_token(
    id_token: str,
    keys: KeySet,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    leeway: int = ID_TOKEN_LEEWAY,
) -> dict[str, Any]:
    """The claims of a valid ID token. ``issuer`` may be Microsoft's multi-tenant template
    (``.../{tenantid}/v2.0``), filled in from the token's ``tid``.

    Raises IdTokenInvalid with ``reason`` ``signature``, ``issuer``, ``audience``,
    ``expired``, ``nonce`` or ``malformed``.
    """
    try:
        decoded = jwt.decode(id_token, keys, algorithms=["RS256"])
    except (BadSignatureError, MissingKeyError, InvalidKeyIdError, ValueError) as exc:
        raise IdTokenInvalid("signature", "its signature does not verify") from exc
    except JoseError as exc:
        raise IdTokenInvalid("malformed", "it cannot be decoded") from exc
    claims = dict(decoded.claims)

    expected_issuer = issuer
    if TENANT_PLACEHOLDER in issuer:
        tid = claims.get("tid")
        if not isinstance(tid, str) or not tid or "/" in tid:
            raise IdTokenInvalid("issuer", "it names no tenant (tid)")
        expected_issuer = issuer.replace(TENANT_PLACEHOLDER, tid)
    registry = jwt.JWTClaimsRegistry(
        leeway=leeway,
        iss={"essential": True, "value": expected_issuer},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        sub={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise IdTokenInvalid("expired", "it has expired") from None
    except ClaimError as exc:
        reason = {"iss": "issuer", "aud": "audience", "exp": "expired"}.get(exc.claim, "malformed")
        raise IdTokenInvalid(reason, f"the {exc.claim} claim is wrong or missing") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise IdTokenInvalid("audience", "it was issued to another party (azp)")
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise IdTokenInvalid("nonce", "its nonce does not match the request")
    return claims


def _verified_email(claims: dict[str, Any], client: ClientConfig) -> str:
    """Google: ``email`` with ``email_verified``. Microsoft (no such claim in v2 tokens):
    ``email``, else ``preferred_username``; an explicit ``email_verified: false`` refuses."""
    email = claims.get("email")
    if client.provider.requires_email_verified:
        if claims.get("email_verified") is not True:
            raise IdTokenInvalid("email", "the provider has not verified the email address")
    elif claims.get("email_verified") is False:
        raise IdTokenInvalid("email", "the provider has not verified the email address")
    if not email and client.provider.name == "microsoft":
        email = claims.get("preferred_username")
    if not isinstance(email, str) or "@" not in email:
        raise IdTokenInvalid("email", "it carries no email address")
    return email.strip()
