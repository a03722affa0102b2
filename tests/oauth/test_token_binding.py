"""A signed-in alias's token goes only to the server of its sign-in: changing the server
(PATCH, an unsaved test) is refused and nothing reaches the other host, and the endpoint
backstop refuses a token for any other server however the alias got there."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
import trustme
from sqlalchemy import update

from sendas.context import AppContext
from sendas.db.models import Alias, ImapAccount
from sendas.endpoints import alias_endpoint, alias_imap_endpoint
from sendas.errors import ReauthRequired
from sendas.oauth import AliasTokens
from tests.conftest import Person
from tests.oauth.conftest import USER_EMAIL
from tests.oauth.test_web_flow import (
    alias_row,
    log_in,
    make_alias,
    register_app,
    send,
    sign_in,
    status_of,
    web,
)
from tests.outbox.conftest import FAST, running_worker, wait_for
from tests.servers.oauth_server import OAuthServerFactory
from tests.servers.smtpd import SmtpdFactory, SmtpdServer

__all__ = ["web"]

REFUSAL = "a signed-in alias sends through Google's server; sign in again or switch to a password"


async def signed_in(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    smtpd: SmtpdFactory,
) -> tuple[int, SmtpdServer, SmtpdServer]:
    """Alice's alias signed in with "Google", whose registered server is ``mail``; ``other``
    is a second server that would accept the token (it asks the same authorization server)."""
    server = oauth_server("google")
    mail = await smtpd("implicit", token_check=server.token_check)
    other = await smtpd("implicit", token_check=server.token_check)
    await register_app(ctx, web, admin, server, mail=mail)
    alias_id = await make_alias(web, alice, USER_EMAIL, ca_pem=mail.ca_pem)
    await log_in(web, alice)
    assert (await sign_in(web, "google", alias_id)).status_code == 303
    return alias_id, mail, other


def problems(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {p["loc"][-1]: p["msg"] for p in r.json()["detail"]}


async def test_moving_a_signed_in_alias_is_refused_and_nothing_reaches_the_new_host(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    smtpd: SmtpdFactory,
) -> None:
    alias_id, mail, other = await signed_in(ctx, web, admin, alice, oauth_server, smtpd)
    before = alias_row(ctx, alias_id)
    url, h = f"/api/aliases/{alias_id}", alice.headers
    elsewhere = f"{other.host}:{other.port}"

    another_ca = trustme.CA().cert_pem.bytes().decode()
    # The server, the port, the TLS mode, another CA: each refused, nothing written.
    for change in (
        {"smtp_server": elsewhere},
        {"smtp_server": f"{mail.host}:{other.port}"},
        {"tls": "starttls"},
    ):
        assert problems(await web.patch(url, headers=h, json=change)) == {"smtp_server": REFUSAL}
    found = problems(await web.patch(url, headers=h, json={"ca_bundle": another_ca}))
    assert found == {"ca_bundle": REFUSAL}
    # An unsaved Test Connection of the stored alias with another server: refused too.
    r = await web.post(
        "/api/aliases/test",
        headers=h,
        json={"alias_id": alias_id, "smtp_server": elsewhere, "smtp_username": USER_EMAIL},
    )
    assert problems(r) == {"smtp_server": REFUSAL}
    assert alias_row(ctx, alias_id) == before

    # Mail goes out through the bound server only; the other one never hears from sendas.
    message = await send(web, alice, alias_id, "bound")
    async with running_worker(ctx, FAST):
        await wait_for(lambda: status_of(ctx, message) == "sent")
    assert len(mail.recorder.xoauth2_payloads) == 1
    assert other.recorder.connections == 0 and other.recorder.xoauth2_payloads == []

    # Switching to a password (with the password) may go anywhere: the tokens are dropped.
    r = await web.patch(
        url,
        headers=h,
        json={"auth": "password", "smtp_server": elsewhere, "smtp_password": "pw-for-other"},
    )
    assert r.status_code == 200, r.text
    row = alias_row(ctx, alias_id)
    assert row["auth"] == "password" and row["oauth_token_enc"] is None
    assert row["oauth_servers"] is None and row["smtp_host"] == other.host


async def test_the_page_refuses_it_too(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    smtpd: SmtpdFactory,
) -> None:
    alias_id, _, other = await signed_in(ctx, web, admin, alice, oauth_server, smtpd)
    before = alias_row(ctx, alias_id)
    page = await web.get(f"/aliases/{alias_id}")
    assert page.status_code == 200

    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    form = {
        "csrf": csrf.group(1),
        "alias_id": str(alias_id),
        "auth": "google",
        "description": "Work",
        "from_address": USER_EMAIL,
        "smtp_server": f"{other.host}:{other.port}",
        "tls": "implicit",
    }
    r = await web.post("/aliases/save", data=form)
    assert r.status_code == 422, r.text
    assert (
        "sends through Google&#39;s server" in r.text or "sends through Google's server" in r.text
    )
    assert alias_row(ctx, alias_id) == before
    assert other.recorder.connections == 0


async def test_the_endpoint_refuses_a_token_for_another_server(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    smtpd: SmtpdFactory,
) -> None:
    alias_id, mail, other = await signed_in(ctx, web, admin, alice, oauth_server, smtpd)
    # Moved behind validation's back (a database edit, an old version, a bug elsewhere).
    with ctx.db.write() as s:
        s.execute(
            update(Alias)
            .where(Alias.id == alias_id)
            .values(smtp_host=other.host, smtp_port=other.port)
        )
        alias = s.get_one(Alias, alias_id)
        s.expunge(alias)
    tokens = AliasTokens(ctx.db, ctx.secrets)
    endpoint = alias_endpoint(
        alias, ctx.secrets, 3.0, tokens.token_provider, ctx.settings.outbound_policy
    )
    assert endpoint.token_provider is not None
    with pytest.raises(ReauthRequired, match="the token was not sent: a signed-in alias"):
        await endpoint.token_provider(False)

    # The worker: the message waits, the other server never gets a token.
    message = await send(web, alice, alias_id, "not to the other host")
    async with running_worker(ctx, FAST):
        await asyncio.sleep(1.0)
    assert status_of(ctx, message) == "queued"
    assert other.recorder.xoauth2_payloads == [] and other.recorder.messages == []
    # Test Connection names the problem without connecting.
    result = (await web.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert result["status"] == "FAILED" and "signed-in alias sends through Google" in result["hint"]
    assert other.recorder.connections <= 1  # at most the worker's refused attempt
    assert other.recorder.xoauth2_payloads == []
    assert mail.recorder.xoauth2_payloads == []

    # IMAP: an account on another server than Google's never gets the token.
    account = ImapAccount(
        user_id=alias.user_id,
        description="x",
        imap_host="imap.elsewhere.test",
        imap_port=993,
        tls="implicit",
        username=USER_EMAIL,
        allow_plaintext_auth=False,
    )
    with pytest.raises(ValueError, match="goes only to Google's IMAP server"):
        alias_imap_endpoint(
            alias, account, ctx.secrets, 3.0, tokens.token_provider, ctx.settings.outbound_policy
        )
