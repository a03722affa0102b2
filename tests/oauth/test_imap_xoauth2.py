"""IMAP with Sign in with Google / Microsoft, end to end: a real Dovecot that checks tokens at
the test authorization server (RFC 7662), a real SMTP server that does too, sendas over HTTP.

The rule under test: an IMAP account linked to a signed-in alias, with no password and the
signed-in address as user name, logs in with XOAUTH2 and the alias's access token.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.orm import selectinload

from sendas.context import AppContext
from sendas.db.models import Alias, Lane, Message
from sendas.endpoints import TokenProviders
from sendas.oauth import AliasTokens
from sendas.smtp import TokenProvider
from tests.conftest import Person
from tests.oauth.conftest import USER_EMAIL
from tests.oauth.test_web_flow import (
    log_in,
    make_alias,
    register_app,
    send,
    sign_in,
    status_of,
    stored_tokens,
    web,
)
from tests.outbox.conftest import FAST, running_worker, wait_for
from tests.servers.dovecot import DovecotOAuthFactory, DovecotServer
from tests.servers.oauth_server import OAuthServerFactory, OAuthTestServer
from tests.servers.smtpd import SmtpdFactory, SmtpdServer

__all__ = ["web"]

pytestmark = pytest.mark.dovecot

Setup = tuple[OAuthTestServer, DovecotServer, SmtpdServer, int, int]


async def add_imap_account(
    web: httpx.AsyncClient, person: Person, dovecot: DovecotServer, *, password: str | None = None
) -> int:
    """An IMAP account named as the signed-in address; no password unless given."""
    body: dict[str, Any] = {
        "description": "Work mailbox",
        "imap_server": f"{dovecot.host}:{dovecot.imaps_port}",
        "tls": "implicit",
        "username": USER_EMAIL,
        "ca_bundle": dovecot.ca_pem,
    }
    if password is not None:
        body["password"] = password
    r = await web.post("/api/imap-accounts", headers=person.headers, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["password_set"] is (password is not None)
    account_id: int = r.json()["id"]
    return account_id


async def signed_in_with_imap(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    server: OAuthTestServer,
    dovecot: DovecotServer,
    smtpd: SmtpdFactory,
    *,
    lifetime: int = 3600,
) -> Setup:
    """Alice's alias with the IMAP account linked, signed in at ``server``, sending to a local
    SMTP server that accepts the server's tokens."""
    tls = "implicit" if server.kind == "google" else "starttls"
    mail = await smtpd(tls, token_check=server.token_check)
    imap = f"{dovecot.host}:{dovecot.imaps_port}"
    await register_app(ctx, web, admin, server, mail=mail, imap_server=imap)
    alias_id = await make_alias(web, alice, USER_EMAIL, ca_pem=mail.ca_pem)
    account_id = await add_imap_account(web, alice, dovecot)
    r = await web.patch(
        f"/api/aliases/{alias_id}", headers=alice.headers, json={"imap_account_id": account_id}
    )
    assert r.status_code == 200, r.text
    await log_in(web, alice)
    server.access_token_lifetime = lifetime
    done = await sign_in(web, server.kind, alias_id)
    assert done.status_code == 303, done.text
    server.access_token_lifetime = 3600
    return server, dovecot, mail, alias_id, account_id


def steps_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in result["steps"]}


def sent_copies(dovecot: DovecotServer, subject: str) -> list[Any]:
    return [
        m
        for m in dovecot.read_mailbox(dovecot.mailbox_of(USER_EMAIL), "Sent Items")
        if f"Subject: {subject}".encode() in m.raw
    ]


@pytest.mark.parametrize("kind", ["google", "microsoft"])
async def test_test_connection_and_copy_to_sent_with_xoauth2(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    dovecot_oauth: DovecotOAuthFactory,
    smtpd: SmtpdFactory,
    kind: str,
) -> None:
    server = oauth_server(kind)
    dovecot = dovecot_oauth(server, USER_EMAIL)
    server, dovecot, mail, alias_id, _ = await signed_in_with_imap(
        ctx, web, admin, alice, server, dovecot, smtpd
    )
    label = "Google" if kind == "google" else "Microsoft"

    # Test Connection: token, then the SMTP steps, then the IMAP steps, all with XOAUTH2.
    r = await web.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)
    result = r.json()
    assert result["status"] == "OK", result
    names = [s["name"] for s in result["steps"]]
    assert names[0] == "token" and "auth" in names
    assert names.index("auth") < names.index("imap_login") < names.index("imap_find_sent")
    assert all(s["ok"] for s in result["steps"]), result["steps"]
    steps = steps_of(result)
    assert "XOAUTH2" in steps["auth"]["detail"]
    assert steps["imap_login"]["detail"] == f"{USER_EMAIL} (XOAUTH2)"
    assert result["sent_folder"] == "Sent Items"
    assert mail.recorder.xoauth2_payloads  # SMTP got the token too

    # The page: the card says how the IMAP account signs in, and the saved test passes.
    cards = await web.get("/aliases")
    assert f"signs in with XOAUTH2 ({label} sign-in)" in cards.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', cards.text)
    assert csrf
    tested = await web.post(
        f"/aliases/{alias_id}/test-saved", data={"csrf": csrf.group(1)}, follow_redirects=True
    )
    assert "Status: OK" in tested.text, tested.text

    # A send copies the message to Sent through IMAP, logged in with the token.
    message_id = await send(web, alice, alias_id, f"copy via xoauth2 {kind}")
    async with running_worker(ctx, FAST):
        await wait_for(lambda: _message(ctx, message_id).sent_copy is not None)
    sent = _message(ctx, message_id)
    assert sent.status == "sent"
    assert sent.sent_copy == "appended", sent.sent_copy_detail
    [copy] = sent_copies(dovecot, f"copy via xoauth2 {kind}")
    assert copy.raw == sent.raw and "\\Seen" in copy.flags
    page = await web.get(f"/messages/{message_id}")
    assert "appended" in page.text


async def test_imap_refreshes_an_expiring_token_before_login_and_a_rejected_one_once(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    dovecot_oauth: DovecotOAuthFactory,
    smtpd: SmtpdFactory,
) -> None:
    server = oauth_server("google")
    dovecot = dovecot_oauth(server, USER_EMAIL)
    # The access token lives 2 minutes: within the refresh margin from the start.
    server, dovecot, _, alias_id, account_id = await signed_in_with_imap(
        ctx, web, admin, alice, server, dovecot, smtpd, lifetime=120
    )
    signed_access, _ = stored_tokens(ctx, alias_id)

    # The IMAP account's own Test Connection uses the alias's token: refreshed first, so
    # Dovecot only ever sees the fresh one.
    asked = server.introspections
    r = await web.post(f"/api/imap-accounts/{account_id}/test", headers=alice.headers)
    result = r.json()
    assert result["status"] == "OK", result
    assert steps_of(result)["login"]["detail"] == f"{USER_EMAIL} (XOAUTH2)"
    assert server.refreshes == 1 and server.introspections == asked + 1
    fresh, _ = stored_tokens(ctx, alias_id)
    assert fresh != signed_access

    # The provider ends the token early (sendas still thinks it good): Dovecot refuses it,
    # the token is refreshed once and the login retried.
    server.expire(fresh)
    r = await web.post(f"/api/imap-accounts/{account_id}/test", headers=alice.headers)
    assert r.json()["status"] == "OK", r.json()
    assert server.refreshes == 2
    assert stored_tokens(ctx, alias_id)[0] not in (fresh, signed_access)


async def test_grant_revoked_at_the_copy_pauses_the_alias_and_fails_nothing(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    dovecot_oauth: DovecotOAuthFactory,
    smtpd: SmtpdFactory,
) -> None:
    server = oauth_server("google")
    dovecot = dovecot_oauth(server, USER_EMAIL)
    server, dovecot, mail, alias_id, _ = await signed_in_with_imap(
        ctx, web, admin, alice, server, dovecot, smtpd
    )
    tokens = AliasTokens(ctx.db, ctx.secrets)
    made: list[int] = []

    def providers(alias: int) -> TokenProvider:
        # A claim makes the SMTP provider first, then the IMAP one: the grant is revoked
        # between the send and the copy to Sent (the owner removed the app's access).
        made.append(alias)
        inner = tokens.token_provider(alias)
        if len(made) % 2 == 1:
            return inner

        async def revoked_first(force_refresh: bool) -> str:
            server.revoke(USER_EMAIL)
            return await inner(force_refresh)

        return revoked_first

    first = await send(web, alice, alias_id, "sent before the revocation")
    token_providers: TokenProviders = providers
    async with running_worker(ctx, FAST, token_providers=token_providers):
        await wait_for(lambda: _message(ctx, first).sent_copy is not None)
        await wait_for(lambda: _lane(ctx, alias_id).needs_attention)
    sent = _message(ctx, first)
    assert sent.status == "sent" and len(mail.recorder.messages) == 1
    assert sent.sent_copy == "failed" and "revoked" in (sent.sent_copy_detail or "")
    assert sent_copies(dovecot, "sent before the revocation") == []
    assert _alias(ctx, alias_id).needs_reauth
    assert "revoked" in (_lane(ctx, alias_id).paused_reason or "")

    # The next message waits for the reconnect: queued, not failed.
    second = await send(web, alice, alias_id, "waits for the reconnect")
    async with running_worker(ctx, FAST):
        await wait_for(lambda: _lane(ctx, alias_id).needs_attention)
    assert status_of(ctx, second) == "queued"
    assert len(mail.recorder.messages) == 1
    test = (await web.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert test["status"] == "FAILED" and "Reconnect" in test["hint"]


async def test_an_account_with_a_password_keeps_using_it(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    dovecot_oauth: DovecotOAuthFactory,
    smtpd: SmtpdFactory,
) -> None:
    server = oauth_server("google")
    dovecot = dovecot_oauth(server, USER_EMAIL)
    server, dovecot, _, alias_id, account_id = await signed_in_with_imap(
        ctx, web, admin, alice, server, dovecot, smtpd
    )
    r = await web.patch(
        f"/api/imap-accounts/{account_id}",
        headers=alice.headers,
        json={"password": dovecot.mailbox_of(USER_EMAIL).password},
    )
    assert r.status_code == 200, r.text
    result = (await web.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert result["status"] == "OK", result
    assert steps_of(result)["imap_login"]["detail"] == USER_EMAIL  # a password login
    assert "XOAUTH2" not in (await web.get("/aliases")).text.split("Copy to Sent")[1][:200]


def _message(ctx: AppContext, message_id: int) -> Message:
    with ctx.db.read() as s:
        row = s.get_one(Message, message_id, options=[selectinload(Message.body)])
        s.expunge(row)
        return row


def _alias(ctx: AppContext, alias_id: int) -> Alias:
    with ctx.db.read() as s:
        row = s.get_one(Alias, alias_id)
        s.expunge(row)
        return row


def _lane(ctx: AppContext, alias_id: int) -> Lane:
    with ctx.db.read() as s:
        row = s.get_one(Lane, f"alias:{alias_id}")
        s.expunge(row)
        return row


async def test_microsoft_asks_for_imap_only_when_the_alias_copies_through_imap(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
) -> None:
    server = oauth_server("microsoft")
    await register_app(ctx, web, admin, server)
    with_imap = await make_alias(web, alice, USER_EMAIL)
    r = await web.post(
        "/api/aliases",
        headers=alice.headers,
        json={
            "description": "Private",
            "from_address": "other@example.test",
            "smtp_server": "mail.example.test:587",
        },
    )
    assert r.status_code == 201, r.text
    without: int = r.json()["id"]
    r = await web.post(
        "/api/imap-accounts",
        headers=alice.headers,
        json={"imap_server": "imap.example.test:993", "username": USER_EMAIL},
    )
    assert r.status_code == 201, r.text
    r = await web.patch(
        f"/api/aliases/{with_imap}", headers=alice.headers, json={"imap_account_id": r.json()["id"]}
    )
    assert r.status_code == 200, r.text
    await log_in(web, alice)
    imap_scope = "https://outlook.office.com/IMAP.AccessAsUser.All"
    scopes = {}
    for alias_id in (with_imap, without):
        start = await web.get(f"/oauth/microsoft/start?alias_id={alias_id}")
        assert start.status_code == 303, start.text
        query = parse_qs(urlsplit(start.headers["location"]).query)
        scopes[alias_id] = query["scope"][0].split()
    assert imap_scope in scopes[with_imap]
    assert "https://outlook.office.com/SMTP.Send" in scopes[without]
    assert imap_scope not in scopes[without]
