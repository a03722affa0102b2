"""A real OAuth 2 / OpenID Connect authorization server for the tests, built from Authlib's
server components (Flask integration) and served by werkzeug in a thread on 127.0.0.1.

What it does, as Google and Microsoft do:
- ``/.well-known/openid-configuration`` (Google style) or
  ``/{tenant}/v2.0/.well-known/openid-configuration`` (Microsoft style, issuer template
  ``.../{tenantid}/v2.0`` and a ``tid`` claim), ``/jwks``;
- ``/authorize``: an HTML consent page with "Allow" and "Deny" buttons for the user the test
  set with :meth:`OAuthTestServer.set_user`; authorization code grant with PKCE (S256) and
  the OpenID Connect code flow (RS256 ID tokens, key made at start);
- ``/token``: code exchange and refresh with rotation (the old refresh token stops working);
- ``/revoke``: RFC 7009 revocation. :meth:`OAuthTestServer.revoke` revokes a user's grant;
- ``/introspect``: RFC 7662 token introspection for a resource server (the private Dovecot's
  ``oauth2`` passdb): ``active``, ``email``, ``scope``, ``exp`` of an access token, or just
  ``active: false`` for an expired, revoked or unknown one. The resource server signs in
  with HTTP Basic as :data:`RESOURCE_CLIENT_ID` (:attr:`OAuthTestServer.introspection_url`
  carries the credentials, as Dovecot wants them).

Control API for tests: :meth:`register_client`, :meth:`set_user`, ``access_token_lifetime``,
:meth:`is_active`, :meth:`revoke`, :meth:`expire`, counters (``refreshes``,
``token_requests``, ``introspections``) and ``failure`` (one of :data:`FAILURES`).

Fixture: ``oauth_server`` is a factory ``oauth_server(kind="google"|"microsoft")`` returning
a started :class:`OAuthTestServer`; every server it started is stopped after the test.
"""

from __future__ import annotations

import functools
import html
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, Response, jsonify, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.servers.process import free_port

Kind = Literal["google", "microsoft"]
Failure = Literal[
    "token_503",  # the token endpoint answers 503 (code exchange and refresh)
    "id_token_issuer",
    "id_token_audience",
    "id_token_expired",
    "id_token_signature",  # signed by a key that is not in the JWKS (same kid)
    "id_token_nonce",
]
FAILURES: tuple[Failure, ...] = (
    "token_503",
    "id_token_issuer",
    "id_token_audience",
    "id_token_expired",
    "id_token_signature",
    "id_token_nonce",
)
KEY_ID = "test-signing-key"
TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"  # the tid claim "as Microsoft"
# The resource server (Dovecot) that may introspect tokens; URL-safe, no ':' or '@'.
RESOURCE_CLIENT_ID = "dovecot-imap"
RESOURCE_CLIENT_SECRET = "introspect-3b9e1c"


@dataclass
class User:
    email: str

    @property
    def sub(self) -> str:
        return "sub-" + uuid.uuid5(uuid.NAMESPACE_URL, self.email).hex[:16]

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class Client:
    """A registered application (Authlib's ClientMixin methods)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    email: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Grant:
    """One issued token pair (Authlib's TokenMixin methods)."""

    client_id: str
    email: str
    scope: str
    access_token: str
    refresh_token: str | None
    issued_at: float
    expires_in: int
    revoked: bool = False  # the whole grant (access and refresh)
    refresh_used: bool = False  # rotated away

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return User(self.email)

    def get_client(self) -> Any:
        return None


@functools.cache
def _signing_keys() -> tuple[RSAKey, RSAKey]:
    """The signing key and a rogue one with the same kid, made once per test session."""
    params = {"kid": KEY_ID, "use": "sig"}
    return RSAKey.generate_key(2048, parameters=params), RSAKey.generate_key(
        2048, parameters=params
    )


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """URLs carry state and codes: no access log."""


class OAuthTestServer:
    """One authorization server ("as Google" or "as Microsoft") on 127.0.0.1."""

    def __init__(self, kind: Kind = "google", *, tenant: str = "common") -> None:
        self.kind = kind
        self.tenant = tenant
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.access_token_lifetime = 3600
        self.id_token_lifetime = 3600
        self.failure: Failure | None = None
        self.token_delay = 0.0  # seconds /token waits before answering (widens races)
        self.refreshes = 0  # successful refresh grants
        self.token_requests = 0  # every POST to /token
        self.codes_issued = 0
        self.introspections = 0  # every POST to /introspect
        self._user: User | None = None
        self._clients: dict[str, Client] = {
            RESOURCE_CLIENT_ID: Client(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET, [])
        }
        self._codes: dict[str, AuthCode] = {}
        self._by_access: dict[str, Grant] = {}
        self._by_refresh: dict[str, Grant] = {}
        self._lock = threading.RLock()
        self.key, self._rogue_key = _signing_keys()
        self.app = self._build_app()
        self._httpd: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- addresses -----------------------------------------------------------------------

    @property
    def discovery_url(self) -> str:
        if self.kind == "microsoft":
            return f"{self.base_url}/{self.tenant}/v2.0/.well-known/openid-configuration"
        return f"{self.base_url}/.well-known/openid-configuration"

    @property
    def issuer(self) -> str:
        """The issuer the discovery document publishes (a template "as Microsoft")."""
        if self.kind == "microsoft":
            return f"{self.base_url}/{{tenantid}}/v2.0"
        return self.base_url

    @property
    def introspection_url(self) -> str:
        """``/introspect`` with the resource server's Basic credentials in it (Dovecot's
        ``introspection_url`` form)."""
        creds = f"{RESOURCE_CLIENT_ID}:{RESOURCE_CLIENT_SECRET}"
        return f"http://{creds}@127.0.0.1:{self.port}/introspect"

    @property
    def token_issuer(self) -> str:
        """The ``iss`` ID tokens carry."""
        return self.issuer.replace("{tenantid}", TENANT_ID)

    # --- control API for tests -------------------------------------------------------------

    def register_client(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        with self._lock:
            existing = self._clients.get(client_id)
            uris = [*existing.redirect_uris, redirect_uri] if existing else [redirect_uri]
            self._clients[client_id] = Client(client_id, client_secret, uris)

    def set_user(self, email: str) -> None:
        """The person signed in at this provider (who sees the consent page)."""
        with self._lock:
            self._user = User(email)

    def is_active(self, access_token: str) -> bool:
        with self._lock:
            grant = self._by_access.get(access_token)
            return grant is not None and not grant.revoked and not grant.is_expired()

    def email_for(self, access_token: str) -> str | None:
        with self._lock:
            grant = self._by_access.get(access_token)
            return grant.email if grant else None

    def refresh_token_works(self, refresh_token: str) -> bool:
        with self._lock:
            grant = self._by_refresh.get(refresh_token)
            return grant is not None and not grant.revoked and not grant.refresh_used

    def revoke(self, email: str) -> int:
        """Revoke every grant of ``email`` (as "remove app access" does). Returns how many."""
        with self._lock:
            grants_ = [g for g in self._by_access.values() if g.email == email and not g.revoked]
            for g in grants_:
                g.revoked = True
            return len(grants_)

    def expire(self, access_token: str) -> None:
        """Make an access token expired now (its refresh token keeps working)."""
        with self._lock:
            grant = self._by_access.get(access_token)
            if grant is not None:
                grant.issued_at = time.time() - grant.expires_in - 1

    def token_check(self, access_token: str, user: str) -> bool:
        """For the SMTP server: is this an active token issued for ``user``?"""
        with self._lock:
            return self.is_active(access_token) and self.email_for(access_token) == user

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._httpd = make_server(
            "127.0.0.1", self.port, self.app, threaded=True, request_handler=_Quiet
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # --- Authlib wiring ----------------------------------------------------------------------

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        with self._lock:
            grant = Grant(
                client_id=req.client.client_id,
                email=req.user.email,
                scope=token.get("scope", ""),
                access_token=token["access_token"],
                refresh_token=token.get("refresh_token"),
                issued_at=time.time(),
                expires_in=int(token["expires_in"]),
            )
            self._by_access[grant.access_token] = grant
            if grant.refresh_token:
                self._by_refresh[grant.refresh_token] = grant

    def _build_server(self, app: Flask) -> AuthorizationServer:
        test_server = self

        def query_client(client_id: str) -> Client | None:
            with test_server._lock:
                return test_server._clients.get(client_id)

        server = AuthorizationServer(app, query_client=query_client, save_token=self._save_token)
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: "at-" + secrets.token_urlsafe(24),
                refresh_token_generator=lambda **_: "rt-" + secrets.token_urlsafe(24),
                expires_generator=lambda client, grant_type: test_server.access_token_lifetime,
            ),
        )
        id_tokens = _id_tokens_class(self)()
        server.register_grant(_code_grant_class(self), [CodeChallenge(required=True), id_tokens])
        server.register_grant(_refresh_grant_class(self))
        server.register_endpoint(_revocation_class(self))
        server.register_endpoint(_introspection_class(self))
        return server

    def _build_app(self) -> Flask:
        app = Flask(f"oauth-{self.kind}-{self.port}")
        server = self._build_server(app)
        prefix = f"/{self.tenant}/v2.0" if self.kind == "microsoft" else ""

        @app.get(f"{prefix}/.well-known/openid-configuration")
        def discovery() -> Response:
            base = self.base_url
            return jsonify(
                issuer=self.issuer,
                authorization_endpoint=f"{base}/authorize",
                token_endpoint=f"{base}/token",
                revocation_endpoint=f"{base}/revoke",
                jwks_uri=f"{base}/jwks",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
                scopes_supported=["openid", "email", "offline_access"],
                token_endpoint_auth_methods_supported=[
                    "client_secret_basic",
                    "client_secret_post",
                ],
                code_challenge_methods_supported=["S256"],
                grant_types_supported=["authorization_code", "refresh_token"],
            )

        @app.get("/jwks")
        def jwks() -> Response:
            return jsonify(KeySet([self.key]).as_dict(private=False))

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            user = self._user
            if request.method == "GET":
                try:
                    grant = server.get_consent_grant(end_user=user)
                except Exception as exc:  # an invalid request: say so, do not redirect
                    return Response(
                        f"<h1>Invalid request</h1><p>{html.escape(str(exc))}</p>", status=400
                    )
                return _consent_page(
                    client_id=grant.client.client_id,
                    email=user.email if user else "(nobody signed in)",
                    scope=grant.request.payload.scope or "",
                    action=request.full_path,
                )
            allowed = request.form.get("decision") == "allow"
            grant = server.get_consent_grant(end_user=user)
            return server.create_authorization_response(
                grant=grant, grant_user=user if allowed else None
            )

        @app.post("/token")
        def token() -> Any:
            with self._lock:
                self.token_requests += 1
            if self.token_delay:
                time.sleep(self.token_delay)
            if self.failure == "token_503":
                return Response("<h1>503 Service Unavailable</h1>", status=503)
            return server.create_token_response()

        @app.post("/revoke")
        def revoke() -> Any:
            return server.create_endpoint_response(RevocationEndpoint.ENDPOINT_NAME)

        @app.post("/introspect")
        def introspect() -> Any:
            with self._lock:
                self.introspections += 1
            return server.create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)

        return app


# --- Authlib grants and endpoints bound to one test server (Authlib makes the instances) ---


def _code_grant_class(test_server: OAuthTestServer) -> type[grants.AuthorizationCodeGrant]:
    """Authorization codes, kept in the test server's memory."""

    class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            with test_server._lock:
                test_server.codes_issued += 1
                test_server._codes[code] = AuthCode(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.payload.scope,
                    email=req.user.email,
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                )

        def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
            with test_server._lock:
                found = test_server._codes.get(code)
            return found if found and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: AuthCode) -> None:
            with test_server._lock:
                test_server._codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: AuthCode) -> User:
            return User(authorization_code.email)

    return CodeGrant


def _refresh_grant_class(test_server: OAuthTestServer) -> type[grants.RefreshTokenGrant]:
    """Refresh with rotation: each refresh token works once."""

    class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
        INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

        def authenticate_refresh_token(self, refresh_token: str) -> Grant | None:
            with test_server._lock:
                grant = test_server._by_refresh.get(refresh_token)
            if grant is None or grant.revoked or grant.refresh_used:
                return None
            return grant

        def authenticate_user(self, refresh_token: Grant) -> User:
            return User(refresh_token.email)

        def revoke_old_credential(self, refresh_token: Grant) -> None:
            with test_server._lock:
                refresh_token.refresh_used = True
                test_server.refreshes += 1

    return RefreshGrant


def _id_tokens_class(test_server: OAuthTestServer) -> type[OpenIDCode]:
    """ID tokens, broken on purpose when the server's ``failure`` asks for it."""

    class IdTokens(OpenIDCode):  # type: ignore[misc]
        def exists_nonce(self, nonce: str, req: Any) -> bool:
            return False

        def resolve_client_private_key(self, client: Client) -> RSAKey:
            if test_server.failure == "id_token_signature":
                return test_server._rogue_key
            return test_server.key

        def get_encode_header(self, client: Client) -> dict[str, str]:
            return {"alg": "RS256", "kid": KEY_ID}

        def get_client_claims(self, client: Client) -> dict[str, Any]:
            return _id_token_claims(test_server, client.client_id)

        def get_authorization_code_claims(self, authorization_code: AuthCode) -> Any:
            claims = super().get_authorization_code_claims(authorization_code)
            if test_server.failure == "id_token_nonce":
                claims["nonce"] = "not-the-nonce-you-sent"
            return claims

        def generate_user_info(self, user: User, scope: str) -> UserInfo:
            info = UserInfo(sub=user.sub, email=user.email)
            if test_server.kind == "microsoft":
                info["tid"] = TENANT_ID
                info["preferred_username"] = user.email
            else:
                info["email_verified"] = True
            return info

    return IdTokens


def _id_token_claims(test_server: OAuthTestServer, client_id: str) -> dict[str, Any]:
    """iss/aud/iat/exp of an ID token, one of them wrong when ``failure`` names it."""
    now = int(time.time())
    failure = test_server.failure
    claims: dict[str, Any] = {
        "iss": test_server.token_issuer,
        "aud": [client_id],
        "iat": now,
        "exp": now + test_server.id_token_lifetime,
    }
    if failure == "id_token_issuer":
        claims["iss"] = "https://issuer.invalid"
    elif failure == "id_token_audience":
        claims["aud"] = ["someone-else.apps.example"]
    elif failure == "id_token_expired":
        claims["iat"], claims["exp"] = now - 7200, now - 3600
    return claims


def _revocation_class(test_server: OAuthTestServer) -> type[RevocationEndpoint]:
    """Revocation of access and refresh tokens."""

    class Revocation(RevocationEndpoint):  # type: ignore[misc]
        CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
            with test_server._lock:
                return test_server._by_access.get(token_string) or test_server._by_refresh.get(
                    token_string
                )

        def revoke_token(self, token: Grant, req: Any) -> None:
            with test_server._lock:
                token.revoked = True

    return Revocation


def _introspection_class(test_server: OAuthTestServer) -> type[IntrospectionEndpoint]:
    """RFC 7662 for access tokens; only the resource server client may ask."""

    class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
        CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def query_token(self, token_string: str, token_type_hint: str | None) -> Grant | None:
            with test_server._lock:
                return test_server._by_access.get(token_string)

        def check_permission(self, token: Grant, client: Client, request: Any) -> bool:
            return bool(client.client_id == RESOURCE_CLIENT_ID)

        def introspect_token(self, token: Grant) -> dict[str, Any]:
            # Expired and revoked tokens never get here (Authlib answers active: false).
            return {
                "active": True,
                "client_id": token.client_id,
                "token_type": "Bearer",
                "email": token.email,
                "username": token.email,
                "sub": User(token.email).sub,
                "scope": token.scope,
                "iat": int(token.issued_at),
                "exp": int(token.issued_at + token.expires_in),
                "iss": test_server.token_issuer,
            }

    return Introspection


def _consent_page(*, client_id: str, email: str, scope: str, action: str) -> Response:
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in scope.split())
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in - consent</title></head>
<body>
<h1>{html.escape(client_id)} wants to access your account</h1>
<p id="user">Signed in as <b>{html.escape(email)}</b></p>
<ul id="scopes">{scopes}</ul>
<form method="post" action="{html.escape(action)}">
  <button type="submit" name="decision" value="allow" id="allow">Allow</button>
  <button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
</body></html>"""
    return Response(body, mimetype="text/html")


OAuthServerFactory = Callable[..., OAuthTestServer]


@pytest.fixture
def oauth_server() -> Iterator[OAuthServerFactory]:
    """Factory: ``oauth_server("google")`` or ``oauth_server("microsoft", tenant=...)``."""
    started: list[OAuthTestServer] = []

    def start(kind: Kind = "google", **kwargs: Any) -> OAuthTestServer:
        instance = OAuthTestServer(kind, **kwargs)
        instance.start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()
