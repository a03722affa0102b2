"""OAuth test helpers: an app registered at the test authorization server and in sendas,
the consent page driven with httpx, and an alias signed in through the real flow."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
from pydantic import SecretStr

from sendas.context import AppContext
from sendas.db.engine import Database
from sendas.db.models import Alias
from sendas.oauth import (
    ClientConfig,
    SignInResult,
    apply_sign_in,
    finish_sign_in,
    load_client,
    save_client,
    start_sign_in,
)
from sendas.oauth.metadata import clear_cache
from sendas.secrets import SecretBox
from tests.conftest import make_person
from tests.servers.oauth_server import OAuthTestServer, oauth_server

__all__ = ["oauth_server"]

CLIENT_ID = "sendas-test.apps.example"
CLIENT_SECRET = "client-secret-7f3a9c1e5b"
REDIRECT_URI = "http://127.0.0.1:8025/oauth/{provider}/callback"
USER_EMAIL = "owner@example.test"


def register(db: Database, box: SecretBox, server: OAuthTestServer) -> ClientConfig:
    """Register the app at the server and in sendas (discovery_url pointing at the server)."""
    clear_cache()
    redirect = REDIRECT_URI.format(provider=server.kind)
    server.register_client(CLIENT_ID, CLIENT_SECRET, redirect)
    server.set_user(USER_EMAIL)
    with db.write() as s:
        save_client(
            s,
            server.kind,
            box,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            discovery_url=server.discovery_url,
        )
    with db.read() as s:
        client = load_client(s, server.kind, box)
    assert client is not None
    return client


async def consent(url: str, decision: str = "allow") -> dict[str, str]:
    """Open the consent page, press Allow or Deny, return the callback's query parameters."""
    async with httpx.AsyncClient() as http:
        page = await http.get(url)
        assert page.status_code == 200, page.text
        assert ">Allow</button>" in page.text and ">Deny</button>" in page.text
        found = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert found
        action = urljoin(str(page.url), html.unescape(found.group(1)))
        answer = await http.post(action, data={"decision": decision})
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(url_of_redirect(location))
    return dict(parse_qsl(urlsplit(location).query))


def url_of_redirect(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def sign_in(client: ClientConfig, *, user_id: int = 1, imap: bool = False) -> SignInResult:
    redirect = REDIRECT_URI.format(provider=client.provider.name)
    url, pending = await start_sign_in(
        client, redirect_uri=redirect, user_id=user_id, alias_id=None, imap=imap
    )
    return await finish_sign_in(client, pending, await consent(url))


async def signed_in_alias(ctx: AppContext, server: OAuthTestServer) -> tuple[int, SignInResult]:
    """A user, an alias of theirs, signed in through the whole flow. Returns its id."""
    client = register(ctx.db, ctx.secrets, server)
    person = make_person(ctx, "person@example.com")
    result = await sign_in(client, user_id=person.id)
    with ctx.db.write() as s:
        alias = Alias(
            user_id=person.id,
            description="Work",
            description_key="work",
            alias_name="Work",
            from_address="",
            smtp_host="mail.example.test",
            smtp_password_enc=ctx.secrets.encrypt("old password"),
        )
        s.add(alias)
        s.flush()
        mismatch = apply_sign_in(alias, result, ctx.secrets)
        assert not mismatch
        return alias.id, result
