"""Sign in with Google / Microsoft end to end over HTTP: the admin registers the app through
the API, a logged-in user signs an alias in at the test authorization server, the worker
sends with XOAUTH2 (refreshing and rotating), a revoked grant leaves mail queued until the
user reconnects, and every refusal answers a page and changes nothing."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import update

from sendas.api import create_app
from sendas.context import AppContext
from sendas.db.models import Alias, Lane, Message, PendingSignIn, utcnow
from sendas.oauth import load_tokens
from sendas.oauth.metadata import clear_cache
from tests.conftest import Person
from tests.oauth.conftest import CLIENT_ID, CLIENT_SECRET, USER_EMAIL, consent
from tests.outbox.conftest import FAST, running_worker, wait_for
from tests.servers.oauth_server import OAuthServerFactory, OAuthTestServer
from tests.servers.smtpd import SmtpdFactory, SmtpdServer

PASSWORD = "correct horse battery"
# The authorization server runs in this process: its own (server side) debug logs show the
# tokens it issues, which is its business, not sendas's.
TEST_SERVER_LOGGERS = (
    "authlib.oauth2.rfc6749.grants",
    "authlib.oauth2.rfc6749.authenticate_client",
    "authlib.oauth2.rfc6749.authorization_server",
    "authlib.oauth2.rfc6749.resource_protector",
    "authlib.oauth2.rfc7009",
    "authlib.oauth2.rfc7636",
    "authlib.oidc",
    "werkzeug",
)


@pytest.fixture
async def web(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the whole app (API and pages), in the test's event loop."""
    app = create_app(ctx.settings, ctx=ctx)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def log_in(web: httpx.AsyncClient, person: Person) -> None:
    page = await web.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = await web.post(
        "/login", data={"csrf": csrf.group(1), "email": person.email, "password": PASSWORD}
    )
    assert r.status_code == 303, r.text


def callback_url(kind: str, params: dict[str, str]) -> str:
    return f"/oauth/{kind}/callback?{urlencode(params)}"


async def register_app(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    server: OAuthTestServer,
    *,
    mail: SmtpdServer | None = None,
    imap_server: str | None = None,
) -> None:
    """Register the app at the test server and in sendas; ``mail`` and ``imap_server``
    replace the provider's servers (this machine has no route to Google or Microsoft)."""
    clear_cache()
    redirect = f"{ctx.settings.base_url}/oauth/{server.kind}/callback"
    server.register_client(CLIENT_ID, CLIENT_SECRET, redirect)
    server.set_user(USER_EMAIL)
    r = await web.put(
        f"/api/system/oauth/{server.kind}",
        headers=admin.headers,
        json={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "discovery_url": server.discovery_url,
            **({"smtp_server": f"{mail.host}:{mail.port}"} if mail else {}),
            **({"imap_server": imap_server} if imap_server else {}),
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["configured"] and body["client_secret_set"] and body["redirect_uri"] == redirect
    assert CLIENT_SECRET not in r.text


async def make_alias(
    web: httpx.AsyncClient, person: Person, from_address: str, *, ca_pem: str | None = None
) -> int:
    """A password alias; ``ca_pem`` trusts the CA of the local test servers."""
    r = await web.post(
        "/api/aliases",
        headers=person.headers,
        json={
            "description": "Work",
            "from_address": from_address,
            "smtp_server": "mail.example.test:587",
            "smtp_username": "someone",
            "smtp_password": "old password",
            **({"ca_bundle": ca_pem} if ca_pem else {}),
        },
    )
    assert r.status_code == 201, r.text
    alias_id: int = r.json()["id"]
    return alias_id


async def sign_in(
    web: httpx.AsyncClient, kind: str, alias_id: int | None, decision: str = "allow"
) -> httpx.Response:
    """Start at sendas, consent at the provider, come back to the callback."""
    query = f"?alias_id={alias_id}" if alias_id is not None else ""
    start = await web.get(f"/oauth/{kind}/start{query}")
    assert start.status_code == 303, start.text
    params = await consent(start.headers["location"], decision)
    return await web.get(callback_url(kind, params))


def alias_row(ctx: AppContext, alias_id: int) -> dict[str, Any]:
    with ctx.db.read() as s:
        alias = s.get_one(Alias, alias_id)
        return {c.key: getattr(alias, c.key) for c in Alias.__table__.columns}


def status_of(ctx: AppContext, message_id: int) -> str:
    with ctx.db.read() as s:
        return s.get_one(Message, message_id).status


async def send(web: httpx.AsyncClient, person: Person, alias_id: int, subject: str) -> int:
    r = await web.post(
        "/api/messages",
        headers=person.headers,
        json={"alias_id": alias_id, "to": ["bob@example.org"], "subject": subject, "text": "hi"},
    )
    assert r.status_code == 202, r.text
    message_id: int = r.json()["id"]
    return message_id


def stored_tokens(ctx: AppContext, alias_id: int) -> tuple[str, str]:
    with ctx.db.read() as s:
        tokens = load_tokens(s.get_one(Alias, alias_id), ctx.secrets)
    assert tokens is not None and tokens.refresh_token is not None
    return tokens.access_token.get_secret_value(), tokens.refresh_token.get_secret_value()


def sasl(token: str) -> bytes:
    return f"user={USER_EMAIL}\x01auth=Bearer {token}\x01\x01".encode()


@pytest.mark.parametrize("kind", ["google", "microsoft"])
async def test_sign_in_send_refresh_revoke_reconnect(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    smtpd: SmtpdFactory,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = oauth_server(kind)
    # The provider's TLS mode, on this machine: the registered app names it as its server.
    tls = "implicit" if kind == "google" else "starttls"
    mail = await smtpd(tls, token_check=server.token_check)
    await register_app(ctx, web, admin, server, mail=mail)
    alias_id = await make_alias(web, alice, USER_EMAIL, ca_pem=mail.ca_pem)
    await log_in(web, alice)

    # Sign in: the access token lives 2 minutes, within the refresh margin.
    server.access_token_lifetime = 120
    done = await sign_in(web, kind, alias_id)
    assert done.status_code == 303 and done.headers["location"] == "/aliases"
    server.access_token_lifetime = 3600
    row = alias_row(ctx, alias_id)
    expected = (mail.host, mail.port, tls)
    assert (row["smtp_host"], row["smtp_port"], row["tls"]) == expected
    assert row["auth"] == kind and row["from_address"] == USER_EMAIL
    assert row["smtp_username"] == USER_EMAIL and row["smtp_password_enc"] is None
    assert not row["needs_reauth"]
    page = await web.get("/aliases")
    assert f"Signed in with {'Google' if kind == 'google' else 'Microsoft'} as {USER_EMAIL}" in (
        page.text
    )
    signed_access, signed_refresh = stored_tokens(ctx, alias_id)

    # Send: the worker refreshes first (the token expires soon), stores the rotated refresh
    # token, and signs in with XOAUTH2.
    first = await send(web, alice, alias_id, "first")
    async with running_worker(ctx, FAST):
        await wait_for(lambda: status_of(ctx, first) == "sent")
    access, refresh = stored_tokens(ctx, alias_id)
    assert server.refreshes == 1
    assert access != signed_access and refresh != signed_refresh
    assert server.refresh_token_works(refresh) and not server.refresh_token_works(signed_refresh)
    assert mail.recorder.xoauth2_payloads == [sasl(access)]
    assert len(mail.recorder.messages) == 1

    # Test Connection: a token step, then the SMTP steps with XOAUTH2.
    test = (await web.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert test["status"] == "OK", test
    assert test["steps"][0]["name"] == "token" and test["steps"][0]["ok"]
    assert any(s["name"] == "auth" and s["ok"] for s in test["steps"])

    # Revoked at the provider: the next send stays queued, the alias needs reauth.
    server.revoke(USER_EMAIL)
    second = await send(web, alice, alias_id, "second")
    async with running_worker(ctx, FAST):
        await wait_for(lambda: alias_row(ctx, alias_id)["needs_reauth"])
        await asyncio.sleep(0.3)
    assert status_of(ctx, second) == "queued"
    assert len(mail.recorder.messages) == 1
    with ctx.db.read() as s:
        lane = s.get_one(Lane, f"alias:{alias_id}")
        assert lane.needs_attention and "revoked" in (lane.paused_reason or "")
    shown = (await web.get(f"/api/aliases/{alias_id}", headers=alice.headers)).json()
    assert shown["needs_reauth"] is True
    test = (await web.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert test["status"] == "FAILED" and test["step"] == "token", test
    assert "Reconnect" in test["hint"]

    # Reconnect (the start URL again): the queued message goes out by itself.
    again = await sign_in(web, kind, alias_id)
    assert again.status_code == 303
    assert not alias_row(ctx, alias_id)["needs_reauth"]
    with ctx.db.read() as s:
        assert not s.get_one(Lane, f"alias:{alias_id}").needs_attention
    row = alias_row(ctx, alias_id)
    assert (row["smtp_host"], row["smtp_port"], row["tls"]) == expected
    async with running_worker(ctx, FAST):
        await wait_for(lambda: status_of(ctx, second) == "sent")
    assert len(mail.recorder.messages) == 2
    assert mail.recorder.xoauth2_payloads[-1] == sasl(stored_tokens(ctx, alias_id)[0])

    # Nothing secret on disk or in the logs.
    secrets = {CLIENT_SECRET, *server._by_access, *server._by_refresh}
    assert len(secrets) >= 5
    data_dir = ctx.settings.data_dir
    disk = b"".join(p.read_bytes() for p in data_dir.glob("sendas.db*"))
    logs = "\n".join(
        f"{r.name} {r.getMessage()}"
        for r in caplog.records
        if not r.name.startswith(TEST_SERVER_LOGGERS)
    )
    # Our logs and those of the OAuth client's HTTP stack are there, at DEBUG.
    assert "sendas.oauth" in logs and "httpcore" in logs
    for secret in secrets:
        assert secret.encode() not in disk
        assert secret not in logs


async def test_mismatched_from_is_chosen_by_the_owner(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
) -> None:
    server = oauth_server("google")
    await register_app(ctx, web, admin, server)
    alias_id = await make_alias(web, alice, "sales@example.test")
    await log_in(web, alice)
    page = await sign_in(web, "google", alias_id)
    assert page.status_code == 200 and "Which From address" in page.text
    assert alias_row(ctx, alias_id)["from_address"] == "sales@example.test"  # not overwritten
    assert alias_row(ctx, alias_id)["auth"] == "google"
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    # Without the CSRF token: refused, nothing changed.
    r = await web.post("/oauth/from", data={"alias_id": alias_id, "from_choice": "signed_in"})
    assert r.status_code == 403
    assert alias_row(ctx, alias_id)["from_address"] == "sales@example.test"
    r = await web.post(
        "/oauth/from",
        data={"csrf": csrf.group(1), "alias_id": alias_id, "from_choice": "signed_in"},
    )
    assert r.status_code == 303
    assert alias_row(ctx, alias_id)["from_address"] == USER_EMAIL


async def test_sign_in_without_an_alias_creates_one(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
) -> None:
    server = oauth_server("microsoft")
    await register_app(ctx, web, admin, server)
    await log_in(web, alice)
    done = await sign_in(web, "microsoft", None)
    assert done.status_code == 303
    alias_id = int(done.headers["location"].rsplit("/", 1)[1])
    row = alias_row(ctx, alias_id)
    assert row["user_id"] == alice.id and row["auth"] == "microsoft"
    assert row["description"] == f"Microsoft ({USER_EMAIL})"
    assert row["from_address"] == USER_EMAIL and row["smtp_host"] == "smtp.office365.com"


async def test_every_refusal_is_a_page_and_changes_nothing(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    bob: Person,
    oauth_server: OAuthServerFactory,
) -> None:
    server = oauth_server("google")
    alias_id = await make_alias(web, alice, USER_EMAIL)
    await log_in(web, alice)
    before = alias_row(ctx, alias_id)

    def unchanged() -> None:
        assert alias_row(ctx, alias_id) == before

    # Not registered yet: a page says so.
    r = await web.get(f"/oauth/google/start?alias_id={alias_id}")
    assert (
        r.status_code == 409 and "not set up" in r.text and "text/html" in r.headers["content-type"]
    )
    await register_app(ctx, web, admin, server)

    # A state nobody issued.
    r = await web.get(callback_url("google", {"state": "made-up", "code": "x"}))
    assert r.status_code == 400 and "cannot be used" in r.text and "Nothing was changed" in r.text
    unchanged()

    # Access denied at the provider.
    r = await sign_in(web, "google", alias_id, decision="deny")
    assert r.status_code == 403 and "denied" in r.text and "Nothing was changed" in r.text
    unchanged()

    # An ID token that fails validation (each kind of failure).
    for failure in ("id_token_audience", "id_token_issuer", "id_token_signature",
                    "id_token_expired", "id_token_nonce"):  # fmt: skip
        server.failure = failure  # type: ignore[assignment]
        r = await sign_in(web, "google", alias_id)
        assert r.status_code == 400 and "could not be verified" in r.text, failure
        unchanged()
    server.failure = None

    # An expired state.
    start = await web.get(f"/oauth/google/start?alias_id={alias_id}")
    with ctx.db.write() as s:
        s.execute(update(PendingSignIn).values(expires_at=utcnow() - timedelta(seconds=1)))
    params = await consent(start.headers["location"])
    r = await web.get(callback_url("google", params))
    assert r.status_code == 400 and "too old" in r.text
    unchanged()

    # Another user's state: refused for Bob (and left for Alice); Bob cannot start on
    # Alice's alias either.
    start = await web.get(f"/oauth/google/start?alias_id={alias_id}")
    params = await consent(start.headers["location"])
    app = web._transport
    async with httpx.AsyncClient(transport=app, base_url="http://testserver") as bob_web:
        await log_in(bob_web, bob)
        r = await bob_web.get(callback_url("google", params))
        assert r.status_code == 400 and "cannot be used" in r.text
        unchanged()
        r = await bob_web.get(f"/oauth/google/start?alias_id={alias_id}")
        assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    # Alice's own callback still works, once.
    r = await web.get(callback_url("google", params))
    assert r.status_code == 303
    assert alias_row(ctx, alias_id)["auth"] == "google"
    signed = alias_row(ctx, alias_id)
    r = await web.get(callback_url("google", params))
    assert r.status_code == 400 and "cannot be used" in r.text  # reused
    assert alias_row(ctx, alias_id) == signed


async def test_registration_api_checks_fields_and_role(
    ctx: AppContext, web: httpx.AsyncClient, admin: Person, alice: Person
) -> None:
    r = await web.get("/api/system/oauth/google", headers=alice.headers)
    assert r.status_code == 403
    r = await web.get("/api/system/oauth/microsoft", headers=admin.headers)
    body = r.json()
    assert r.status_code == 200 and body["configured"] is False and body["tenant"] == "common"
    assert body["redirect_uri"] == f"{ctx.settings.base_url}/oauth/microsoft/callback"
    assert "https://outlook.office.com/SMTP.Send" in body["scopes"]
    r = await web.put(
        "/api/system/oauth/google",
        headers=admin.headers,
        json={"client_id": "", "tenant": "x", "discovery_url": "ftp://nope"},
    )
    assert r.status_code == 422
    bad = {tuple(d["loc"])[-1] for d in r.json()["detail"]}
    assert {"client_id", "discovery_url"} <= bad
    r = await web.put("/api/system/oauth/google", headers=admin.headers, json={"client_id": "abc"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "client_secret"
    r = await web.put(
        "/api/system/oauth/google",
        headers=admin.headers,
        json={"client_id": "abc", "client_secret": "s3cret-value", "tenant": "contoso.com"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "tenant"
    r = await web.put(
        "/api/system/oauth/microsoft",
        headers=admin.headers,
        json={"client_id": "abc", "client_secret": "s3cret-value", "tenant": "contoso.com"},
    )
    assert r.status_code == 200 and "s3cret-value" not in r.text
    assert r.json()["tenant"] == "contoso.com" and r.json()["client_secret_set"]
    # The secret left out stays.
    r = await web.put(
        "/api/system/oauth/microsoft", headers=admin.headers, json={"client_id": "def"}
    )
    assert r.status_code == 200 and r.json()["client_secret_set"]
    assert (await web.get("/api/system/oauth/nope", headers=admin.headers)).status_code == 404
    audit = (await web.get("/api/audit", headers=admin.headers)).json()
    events = audit["items"] if isinstance(audit, dict) else audit
    assert any(e["action"] == "oauth_client.update" for e in events)


async def test_a_missing_page_is_html_for_browsers_and_json_for_the_api(
    web: httpx.AsyncClient, alice: Person
) -> None:
    r = await web.get("/no/such/page", headers={"accept": "text/html,*/*"})
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "Not found" in r.text
    # The API keeps JSON: 401 before anything else without credentials, 404 with them.
    r = await web.get("/api/no/such/thing", headers={"accept": "text/html,*/*"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/json")
    r = await web.get("/api/no/such/thing", headers={"accept": "text/html,*/*", **alice.headers})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
