"""Access tokens for signed-in aliases against the real authorization server: refresh with
rotation, revocation, an unavailable provider, two workers racing, nothing in clear on disk,
and an XOAUTH2 login through sendas's SMTP session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.engine import Database, make_engine
from sendas.db.migrate import upgrade
from sendas.db.models import Alias, OAuthClient
from sendas.oauth import (
    AliasTokens,
    ClientConfig,
    ProviderUnavailable,
    ReauthRequired,
    apply_sign_in,
    load_client,
    load_tokens,
)
from sendas.oauth.tokenset import TokenSet
from sendas.secrets import SecretBox
from sendas.smtp import SmtpEndpoint, SmtpSession
from tests.oauth.conftest import CLIENT_SECRET, USER_EMAIL, sign_in, signed_in_alias
from tests.servers.oauth_server import OAuthServerFactory, OAuthTestServer
from tests.servers.smtpd import SmtpdFactory


def stored(db: Database, box: SecretBox, alias_id: int) -> tuple[TokenSet, bool]:
    with db.read() as s:
        alias = s.get(Alias, alias_id)
        assert alias is not None
        tokens = load_tokens(alias, box)
        assert tokens is not None
        return tokens, alias.needs_reauth


def secret(value: SecretStr | None) -> str:
    assert value is not None
    return value.get_secret_value()


async def test_sign_in_stores_the_tokens_and_a_fresh_token_is_not_refreshed(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("google")
    alias_id, result = await signed_in_alias(ctx, server)
    with ctx.db.read() as s:
        alias = s.get(Alias, alias_id)
        assert alias is not None
        assert alias.auth == "google" and alias.smtp_username == USER_EMAIL
        assert (alias.smtp_host, alias.smtp_port, alias.tls) == ("smtp.gmail.com", 465, "implicit")
        assert alias.smtp_password_enc is None and alias.from_address == USER_EMAIL
    tokens = AliasTokens(ctx.db, ctx.secrets)
    assert await tokens.access_token(alias_id) == secret(result.tokens.access_token)
    assert server.refreshes == 0


async def test_sign_in_binds_the_provider_server_and_a_reconnect_restores_it(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("google")
    alias_id, _ = await signed_in_alias(ctx, server)
    with ctx.db.write() as s:
        alias = s.get_one(Alias, alias_id)
        assert (alias.smtp_host, alias.smtp_port, alias.tls) == ("smtp.gmail.com", 465, "implicit")
        assert alias.oauth_servers == {
            "smtp": ["smtp.gmail.com", 465, "implicit"],
            "imap": ["imap.gmail.com", 993],
        }
        # Moved elsewhere behind validation's back (as an old version allowed).
        alias.smtp_host, alias.smtp_port, alias.tls = "smtp-relay.gmail.com", 587, "starttls"
        alias.needs_reauth = True
        user_id = alias.user_id
    # The admin names a gateway meanwhile: the reconnect binds the alias to it.
    with ctx.db.write() as s:
        row = s.get_one(OAuthClient, "google")
        row.smtp_server, row.imap_server = "gw.example.test:2465", "gw.example.test:1993"
    again = await sign_in(register_override(ctx), user_id=user_id)
    with ctx.db.write() as s:
        alias = s.get_one(Alias, alias_id)
        apply_sign_in(alias, again, ctx.secrets)
        assert (alias.smtp_host, alias.smtp_port, alias.tls) == (
            "gw.example.test",
            2465,
            "implicit",
        )
        assert alias.oauth_servers == {
            "smtp": ["gw.example.test", 2465, "implicit"],
            "imap": ["gw.example.test", 1993],
        }
        assert alias.needs_reauth is False


def register_override(ctx: AppContext) -> ClientConfig:
    with ctx.db.read() as s:
        client = load_client(s, "google", ctx.secrets)
    assert client is not None and client.smtp_server_override == "gw.example.test:2465"
    return client


@pytest.mark.parametrize("kind", ["google", "microsoft"])
async def test_refresh_rotates_and_the_new_refresh_token_is_stored(
    ctx: AppContext, oauth_server: OAuthServerFactory, kind: str
) -> None:
    server = oauth_server(kind)
    server.access_token_lifetime = 120  # within the refresh margin (300 s): refresh now
    alias_id, result = await signed_in_alias(ctx, server)
    old_access, old_refresh = (
        secret(result.tokens.access_token),
        secret(result.tokens.refresh_token),
    )
    server.access_token_lifetime = 3600

    token = await AliasTokens(ctx.db, ctx.secrets).access_token(alias_id)

    assert token != old_access and server.is_active(token)
    assert server.refreshes == 1
    now, needs_reauth = stored(ctx.db, ctx.secrets, alias_id)
    assert secret(now.access_token) == token and not needs_reauth
    new_refresh = secret(now.refresh_token)
    assert new_refresh != old_refresh
    assert server.refresh_token_works(new_refresh)
    assert not server.refresh_token_works(old_refresh)  # rotated away at the server
    assert now.email == USER_EMAIL


async def test_a_rejected_token_is_refreshed_once(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("google")
    alias_id, result = await signed_in_alias(ctx, server)
    provide = AliasTokens(ctx.db, ctx.secrets).token_provider(alias_id)
    first = await provide(False)
    assert first == secret(result.tokens.access_token)
    second = await provide(True)  # the server refused ``first``
    assert second != first and server.refreshes == 1
    assert await provide(False) == second


async def test_revoked_grant_needs_reauth_and_stops_asking(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("google")
    server.access_token_lifetime = 120
    alias_id, _ = await signed_in_alias(ctx, server)
    assert server.revoke(USER_EMAIL) == 1
    tokens = AliasTokens(ctx.db, ctx.secrets)

    with pytest.raises(ReauthRequired):
        await tokens.access_token(alias_id)
    assert stored(ctx.db, ctx.secrets, alias_id)[1] is True
    asked = server.token_requests
    with pytest.raises(ReauthRequired):
        await tokens.access_token(alias_id)
    assert server.token_requests == asked  # flagged: no more requests until reconnect


async def test_provider_down_is_a_retry_not_a_reauth(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("microsoft")
    server.access_token_lifetime = 120
    alias_id, result = await signed_in_alias(ctx, server)
    tokens = AliasTokens(ctx.db, ctx.secrets)

    server.failure = "token_503"
    with pytest.raises(ProviderUnavailable) as caught:
        await tokens.access_token(alias_id)
    assert not isinstance(caught.value, ReauthRequired) and caught.value.status == 503
    assert isinstance(caught.value, ConnectionError)

    server.stop()  # connection refused
    with pytest.raises(ProviderUnavailable):
        await tokens.access_token(alias_id)
    now, needs_reauth = stored(ctx.db, ctx.secrets, alias_id)
    assert not needs_reauth
    assert secret(now.refresh_token) == secret(result.tokens.refresh_token)  # kept, still good


async def race(
    server: OAuthTestServer, alias_id: int, a: Database, b: Database, box: SecretBox
) -> None:
    """Two workers (own engines, own AliasTokens) want a token at once: one refresh."""
    server.access_token_lifetime = 3600
    server.token_delay = 0.3  # the second worker arrives while the first refreshes
    first, second = AliasTokens(a, box), AliasTokens(b, box)
    got = await asyncio.gather(first.access_token(alias_id), second.access_token(alias_id))
    assert server.refreshes == 1
    assert got[0] == got[1] and server.is_active(got[0])
    assert secret(stored(a, box, alias_id)[0].access_token) == got[0]


async def test_two_workers_refresh_once_on_sqlite(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("google")
    server.access_token_lifetime = 120
    alias_id, _ = await signed_in_alias(ctx, server)
    other = Database(make_engine(ctx.settings.effective_database_url))
    try:
        await race(server, alias_id, ctx.db, other, ctx.secrets)
    finally:
        other.dispose()


@pytest.fixture
def pg_ctx(postgres_url: str, tmp_path: Path, fernet_key: str) -> Iterator[AppContext]:
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url,
                        secret_key=fernet_key, embedded_worker=False)  # fmt: skip
    context = AppContext.build(settings)
    yield context
    context.close()


@pytest.mark.postgres
async def test_two_workers_refresh_once_on_postgresql(
    pg_ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("microsoft")
    server.access_token_lifetime = 120
    alias_id, _ = await signed_in_alias(pg_ctx, server)
    engine = make_engine(pg_ctx.settings.effective_database_url)
    upgrade(engine)
    other = Database(engine)
    try:
        await race(server, alias_id, pg_ctx.db, other, pg_ctx.secrets)
    finally:
        other.dispose()


async def test_no_token_or_client_secret_in_the_database_file(
    ctx: AppContext, oauth_server: OAuthServerFactory
) -> None:
    server = oauth_server("google")
    server.access_token_lifetime = 120
    alias_id, result = await signed_in_alias(ctx, server)
    fresh = await AliasTokens(ctx.db, ctx.secrets).access_token(alias_id)
    now, _ = stored(ctx.db, ctx.secrets, alias_id)
    needles = {
        secret(result.tokens.access_token),
        secret(result.tokens.refresh_token),
        fresh,
        secret(now.refresh_token),
        CLIENT_SECRET,
    }
    files = [p for p in ctx.settings.data_dir.rglob("*") if p.is_file()]
    db_file = Path(ctx.settings.effective_database_url.removeprefix("sqlite:///"))
    assert db_file in files
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, f"a secret is readable in {path.name}"


async def test_xoauth2_login_through_the_smtp_session(
    ctx: AppContext, oauth_server: OAuthServerFactory, smtpd: SmtpdFactory
) -> None:
    server = oauth_server("google")
    server.access_token_lifetime = 120
    alias_id, _ = await signed_in_alias(ctx, server)
    server.access_token_lifetime = 3600
    mail = await smtpd("starttls", token_check=server.token_check)
    tokens = AliasTokens(ctx.db, ctx.secrets)
    endpoint = SmtpEndpoint(
        host=mail.host,
        port=mail.port,
        tls="starttls",
        username=USER_EMAIL,
        auth="google",
        token_provider=tokens.token_provider(alias_id),
        ca_bundle_pem=mail.ca_pem,
        timeout=3.0,
    )
    async with SmtpSession(endpoint) as session:
        assert session.usable
    token = secret(stored(ctx.db, ctx.secrets, alias_id)[0].access_token)
    assert server.refreshes == 1  # it expired within the margin: refreshed before use
    assert mail.recorder.xoauth2_payloads == [
        f"user={USER_EMAIL}\x01auth=Bearer {token}\x01\x01".encode()
    ]

    # Revoked: the SMTP server refuses the (unexpired) token, one refresh is tried and
    # answered invalid_grant: reauth.
    server.revoke(USER_EMAIL)
    with pytest.raises(ReauthRequired):
        async with SmtpSession(endpoint):
            pass
    assert len(mail.recorder.xoauth2_payloads) == 2  # the refused token, no second AUTH
    assert server.refreshes == 1
    assert stored(ctx.db, ctx.secrets, alias_id)[1] is True
