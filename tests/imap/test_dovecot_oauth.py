"""The ``dovecot_oauth`` fixture itself: a private Dovecot that accepts the test authorization
server's access tokens (XOAUTH2 and OAUTHBEARER, checked by RFC 7662 introspection) and
refuses bad, expired, revoked and someone else's tokens; passwords still work beside it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import imaplib
import secrets
from urllib.parse import urlencode

import httpx
import pytest

from tests.oauth.conftest import CLIENT_ID, CLIENT_SECRET, USER_EMAIL, consent
from tests.servers.dovecot import DovecotOAuthFactory, DovecotServer
from tests.servers.oauth_server import OAuthServerFactory, OAuthTestServer

pytestmark = pytest.mark.dovecot


def issue_token(server: OAuthTestServer, email: str = USER_EMAIL) -> str:
    """An access token for ``email`` straight from the server (code flow, PKCE)."""
    redirect = "http://127.0.0.1:9/callback"
    server.register_client(CLIENT_ID, CLIENT_SECRET, redirect)
    server.set_user(email)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect,
            "scope": "openid email https://mail.google.com/",
            "state": "s",
            "nonce": "n",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    params = asyncio.run(consent(f"{server.base_url}/authorize?{query}"))
    answer = httpx.post(
        f"{server.base_url}/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect,
            "code_verifier": verifier,
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def login(dovecot: DovecotServer, mechanism: str, user: str, token: str) -> tuple[str, str]:
    """AUTHENTICATE with ``mechanism``; returns (OK or NO, the server's text)."""
    if mechanism == "XOAUTH2":
        payload = f"user={user}\x01auth=Bearer {token}\x01\x01"
    else:
        payload = f"n,a={user},\x01auth=Bearer {token}\x01\x01"
    imap = imaplib.IMAP4_SSL(
        dovecot.host, dovecot.imaps_port, ssl_context=dovecot.ssl_context(), timeout=10
    )
    answers = iter([payload.encode(), b""])  # then an empty line after an error challenge
    try:
        typ, data = imap.authenticate(mechanism, lambda _challenge: next(answers))
        return typ, data[0].decode() if data and isinstance(data[0], bytes) else ""
    except imaplib.IMAP4.error as exc:
        return "NO", str(exc)
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


@pytest.fixture
def pair(
    oauth_server: OAuthServerFactory, dovecot_oauth: DovecotOAuthFactory
) -> tuple[OAuthTestServer, DovecotServer]:
    server = oauth_server("google")
    return server, dovecot_oauth(server, USER_EMAIL, "other@example.test")


def test_an_active_token_opens_the_mailbox_with_xoauth2_and_oauthbearer(
    pair: tuple[OAuthTestServer, DovecotServer],
) -> None:
    server, dovecot = pair
    token = issue_token(server)
    before = server.introspections
    for mechanism in ("XOAUTH2", "OAUTHBEARER"):
        typ, text = login(dovecot, mechanism, USER_EMAIL, token)
        assert typ == "OK", (mechanism, text, dovecot.log_tail())
    assert server.introspections >= before + 2  # Dovecot really asked the server
    # The mailbox is the user's, laid out with a SPECIAL-USE Sent folder.
    account = dovecot.mailbox_of(USER_EMAIL)
    assert any(b"Sent Items" in line for line in dovecot.list_folders(account))


def test_bad_expired_revoked_and_foreign_tokens_are_refused(
    pair: tuple[OAuthTestServer, DovecotServer],
) -> None:
    server, dovecot = pair
    assert login(dovecot, "XOAUTH2", USER_EMAIL, "at-not-a-token")[0] == "NO"

    token = issue_token(server)
    # Issued for owner@, presented as other@: the introspected email does not match.
    assert login(dovecot, "XOAUTH2", "other@example.test", token)[0] == "NO"

    server.expire(token)
    typ, text = login(dovecot, "XOAUTH2", USER_EMAIL, token)
    assert typ == "NO" and "AUTHENTICATIONFAILED" in text.upper(), text

    fresh = issue_token(server)
    assert login(dovecot, "XOAUTH2", USER_EMAIL, fresh)[0] == "OK"
    server.revoke(USER_EMAIL)
    assert login(dovecot, "OAUTHBEARER", USER_EMAIL, fresh)[0] == "NO"


def test_passwords_still_work_beside_tokens(pair: tuple[OAuthTestServer, DovecotServer]) -> None:
    _, dovecot = pair
    imap = dovecot.connect(dovecot.special)
    try:
        typ, _ = imap.select("INBOX")
        assert typ == "OK"
    finally:
        imap.logout()
