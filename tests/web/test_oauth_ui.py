"""Sign in with Google / Microsoft in Chromium: the admin's sign-in apps page, the alias
form's buttons, the alias card, and the whole flow against a real authorization server
and an SMTP server that accepts XOAUTH2 only for tokens that server says are active.

These tests run their own ``sendas serve``: registering an app changes what every user's
alias form shows, and the other browser tests expect no app registered.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from playwright.sync_api import expect

from sendas.schemas import AliasCreate
from sendas.services import aliases as alias_service
from sendas.services.common import Actor
from sendas.services.users import get_user_by_email
from tests.servers.oauth_server import OAuthTestServer
from tests.servers.process import free_port
from tests.servers.smtpd import Recorder, RecordingHandler, ScriptedSMTP
from tests.web.conftest import LiveServer, login, run_live_server, shoot

pytestmark = pytest.mark.browser

CLIENT_ID = "sendas-test.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-test-client-secret-value"


# --- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oauth_live(tmp_path_factory: pytest.TempPathFactory, web_ca: trustme.CA) -> Iterator[Any]:
    with run_live_server(tmp_path_factory.mktemp("oauth-live"), web_ca) as server:
        yield server


@pytest.fixture
def opage(browser: Any, oauth_live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=oauth_live.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    yield pg
    context.close()


class XoauthController(Controller):  # type: ignore[misc]
    """aiosmtpd in its own thread with the recording XOAUTH2 handler of tests/servers."""

    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        self.recorder = recorder
        super().__init__(RecordingHandler(recorder, pipelining=False), **kwargs)

    def factory(self) -> ScriptedSMTP:
        return ScriptedSMTP(self.handler, self.recorder, **self.SMTP_kwargs)


@pytest.fixture(scope="module")
def google() -> Iterator[OAuthTestServer]:
    """The authorization server "as Google" (the page's consent screen, tokens, revoke)."""
    server = OAuthTestServer("google")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def xoauth_smtp(web_ca: trustme.CA, google: OAuthTestServer) -> Iterator[tuple[str, Recorder]]:
    """SMTP over implicit TLS (as smtp.gmail.com:465) that takes XOAUTH2 only with tokens
    the authorization server says are active for that user. Yields (host:port, recorder)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    web_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    recorder = Recorder(token_check=google.token_check)
    port = free_port()
    controller = XoauthController(
        recorder, hostname="127.0.0.1", port=port, ssl_context=context, auth_require_tls=False
    )
    controller.start()
    yield f"127.0.0.1:{port}", recorder
    controller.stop()


def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def is_focusable(locator: Any) -> bool:
    locator.focus()
    return bool(locator.evaluate("el => el === document.activeElement"))


# --- the admin page -----------------------------------------------------------------------


def test_admin_page_shows_what_to_register_and_keeps_the_secret(
    opage: Any, oauth_live: LiveServer
) -> None:
    page = opage
    login(page, oauth_live.new_user("boss", admin=True))
    nav(page, "Sign-in apps").click()
    page.wait_for_url("**/admin/oauth/google")
    redirect = page.get_by_label("Redirect URI to register")
    assert redirect.input_value() == f"{oauth_live.url}/oauth/google/callback"
    scopes = page.locator("#scopes-google").inner_text()
    for scope in ("openid", "email", "https://mail.google.com/"):
        assert scope in scopes
    assert "Web application" in page.locator(".howto").inner_text()
    assert page.get_by_text("Not registered").first.is_visible()
    shoot(page, "admin-oauth-google")

    # Nothing typed: both required fields say so, at the field.
    page.get_by_role("button", name="Save the Google app").click()
    assert "is required" in page.locator("#err-client_id").inner_text()
    assert "is required" in page.locator("#err-client_secret").inner_text()
    expect(page.get_by_label("Client ID")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("Client ID").fill(CLIENT_ID)
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.locator("summary", has_text="Advanced").click()
    page.get_by_label("Discovery URL").fill("ftp://accounts.example/")
    page.get_by_role("button", name="Save the Google app").click()
    assert "https://" in page.locator("#err-discovery_url").inner_text()
    # What was typed stays, except the secret, which is never sent back.
    assert page.get_by_label("Client ID").input_value() == CLIENT_ID
    assert page.get_by_label("Client secret").input_value() == ""
    assert CLIENT_SECRET not in page.content()

    page.get_by_label("Discovery URL").fill("")
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.get_by_role("button", name="Save the Google app").click()
    page.locator(".flash", has_text="Saved the Google app").wait_for()
    assert page.locator("h2", has_text="Google").get_by_text("Registered").is_visible()
    assert page.locator("#secret-stored-google").inner_text().strip().startswith("set")
    assert page.get_by_label("Client secret").input_value() == ""
    assert CLIENT_SECRET not in page.content()

    # Saving again with the secret left empty keeps it.
    page.get_by_label("Client ID").fill("other-" + CLIENT_ID)
    page.get_by_role("button", name="Save the Google app").click()
    page.locator(".flash", has_text="Saved the Google app").wait_for()
    assert page.get_by_label("Client ID").input_value() == "other-" + CLIENT_ID
    assert page.locator("#secret-stored-google").is_visible()

    # Microsoft: its own redirect URI, the IMAP scope for the copy to Sent, a tenant.
    page.get_by_role("navigation", name="Providers").get_by_role("link", name="Microsoft").click()
    page.wait_for_url("**/admin/oauth/microsoft")
    redirect = page.get_by_label("Redirect URI to register")
    assert redirect.input_value() == f"{oauth_live.url}/oauth/microsoft/callback"
    scopes = page.locator("#scopes-microsoft").inner_text()
    for scope in ("offline_access", "https://outlook.office.com/SMTP.Send"):
        assert scope in scopes
    assert "IMAP.AccessAsUser.All" in scopes and "copy in Sent" in scopes
    assert page.get_by_label("Tenant").input_value() == "common"
    assert "API permissions" in page.locator(".howto").inner_text()
    page.get_by_label("Client ID").fill("0000-microsoft-app")
    page.get_by_label("Client secret").fill("microsoft secret")
    page.get_by_label("Tenant").fill("not a tenant!")
    page.get_by_role("button", name="Save the Microsoft app").click()
    assert page.locator("#err-tenant").inner_text().strip()
    assert "microsoft secret" not in page.content()
    shoot(page, "admin-oauth-microsoft")


def test_only_admins_see_the_sign_in_apps_page(opage: Any, oauth_live: LiveServer) -> None:
    login(opage, oauth_live.new_user("plain"))
    assert nav(opage, "Sign-in apps").count() == 0
    assert opage.request.get("/admin/oauth/google").status == 404
    csrf = opage.locator("input[name=csrf]").first.get_attribute("value")
    answer = opage.request.post(
        "/admin/oauth/google", form={"csrf": csrf, "client_id": "x", "client_secret": "y"}
    )
    assert answer.status == 404


# --- the alias form while a provider is not registered ------------------------------------


def test_unregistered_provider_button_is_disabled_and_says_why(
    opage: Any, oauth_live: LiveServer
) -> None:
    page = opage
    login(page, oauth_live.new_user("newbie"))
    page.goto("/aliases/new")
    button = page.get_by_role("button", name="Sign in with Microsoft")
    expect(button).to_be_disabled()
    help_text = page.locator("#help-microsoft").inner_text()
    assert "an administrator has not registered the Microsoft app" in help_text
    assert page.get_by_role("link", name="Register the Microsoft app").count() == 0
    # The Outlook.com preset does not leave the user guessing either.
    page.get_by_label("Provider (fills in the server for you)").select_option(label="Outlook.com")
    assert "administrator registers the Microsoft app" in page.locator("#preset-note").inner_text()
    page.get_by_role("button", name="Log out").click()

    login(page, oauth_live.new_user("chief", admin=True))
    page.goto("/aliases/new")
    link = page.get_by_role("link", name="Register the Microsoft app")
    assert is_focusable(link)
    link.click()
    page.wait_for_url("**/admin/oauth/microsoft")
    assert page.get_by_label("Redirect URI to register").is_visible()


# --- the alias card of a signed-in alias --------------------------------------------------


def signed_in_alias(live: LiveServer, owner: str, email: str, *, needs_reauth: bool) -> int:
    """An alias as a finished Google sign-in leaves it (tokens aside)."""
    with live.ctx.db.write() as s:
        actor = Actor.of(get_user_by_email(s, owner))
        alias, _ = alias_service.create_alias(
            s,
            actor,
            AliasCreate(description="Gmail", alias_name="Dana", from_address=email, auth="google"),
            live.ctx.secrets,
        )
        alias.smtp_username = email
        alias.needs_reauth = needs_reauth
        s.flush()
        return alias.id


def test_card_of_an_oauth_alias_and_its_reconnect_button(
    opage: Any, oauth_live: LiveServer
) -> None:
    page = opage
    owner = oauth_live.new_user("dana")
    alias_id = signed_in_alias(oauth_live, owner, "dana@gmail.example", needs_reauth=True)
    login(page, owner)
    card = page.locator(f"#alias-{alias_id}")
    assert "Signed in with Google as dana@gmail.example" in card.inner_text()
    assert "Google no longer accepts this alias's sign-in" in card.inner_text()
    reconnect = card.get_by_role("link", name="Reconnect")
    assert reconnect.get_attribute("href") == f"/oauth/google/start?alias_id={alias_id}"
    assert is_focusable(reconnect)
    shoot(page, "alias-card-reconnect")

    # The edit form: no password fields, the user name is the signed-in address.
    card.get_by_role("link", name="Edit alias Gmail").click()
    page.wait_for_url(f"**/aliases/{alias_id}")
    assert page.get_by_label("SMTP Password").count() == 0
    assert page.get_by_label("Disable SSL/TLS").count() == 0
    user_name = page.get_by_label("SMTP User Name")
    assert user_name.input_value() == "dana@gmail.example"
    expect(user_name).not_to_be_editable()
    assert "Google no longer accepts" in page.locator(".flash-error").inner_text()
    shoot(page, "alias-edit-oauth")


# --- the whole flow -------------------------------------------------------------------------


def register_google_app(
    page: Any, live: LiveServer, google: OAuthTestServer, smtp_server: str
) -> None:
    """The admin registers the app on the page, pointing discovery at the test server and
    the SMTP server at the local one (this machine has no route to Gmail)."""
    login(page, live.new_user("owner", admin=True))
    nav(page, "Sign-in apps").click()
    page.wait_for_url("**/admin/oauth/google")
    redirect = page.get_by_label("Redirect URI to register").input_value()
    google.register_client(CLIENT_ID, CLIENT_SECRET, redirect)  # as done in the console
    page.get_by_label("Client ID").fill(CLIENT_ID)
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.locator("summary", has_text="Advanced").click()
    page.get_by_label("Discovery URL").fill(google.discovery_url)
    page.get_by_label("SMTP server", exact=True).fill(smtp_server)
    page.get_by_role("button", name="Save the Google app").click()
    page.locator(".flash", has_text="Saved the Google app").wait_for()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")


def consent(page: Any, google: OAuthTestServer, email: str) -> None:
    """On the provider's consent page: the account and the Gmail scope, then Allow."""
    page.wait_for_url(f"{google.base_url}/authorize**")
    assert email in page.locator("#user").inner_text()
    assert "https://mail.google.com/" in page.locator("#scopes").inner_text()
    allow = page.get_by_role("button", name="Allow")
    assert is_focusable(allow)
    allow.click()


def send(page: Any, to: str, subject: str) -> Any:
    nav(page, "Compose").click()
    page.get_by_label("To", exact=True).fill(to)
    page.get_by_label("Subject").fill(subject)
    page.get_by_label("Message").fill("Sent with a token, not a password.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/messages/\d+$"))
    return page.url


def test_sign_in_send_revoke_reconnect(
    opage: Any,
    oauth_live: LiveServer,
    google: OAuthTestServer,
    xoauth_smtp: tuple[str, Recorder],
) -> None:
    page = opage
    smtp_server, recorder = xoauth_smtp
    register_google_app(page, oauth_live, google, smtp_server)

    email = "dana.oauth@gmail.example"
    google.set_user(email)
    login(page, oauth_live.new_user("signer"))
    page.goto("/aliases/new")
    sign_in = page.get_by_role("link", name="Sign in with Google")
    assert is_focusable(sign_in)
    sign_in.click()
    consent(page, google, email)

    # Back on sendas: a new alias, signed in, on its edit page.
    page.wait_for_url(re.compile(r"/aliases/\d+$"))
    alias_id = int(page.url.rsplit("/", 1)[1])
    assert f"Signed in with Google as {email}" in page.locator(".flash").inner_text()
    assert page.get_by_label("From Address").input_value() == email
    # The registered app's server (a gateway's, here the local one), not smtp.gmail.com.
    assert page.get_by_label("SMTP Server:Port").input_value() == smtp_server
    assert page.get_by_label("SMTP Password").count() == 0
    # Moving it elsewhere would hand the token to another host: refused.
    page.get_by_label("SMTP Server:Port").fill("127.0.0.1:1")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#err-smtp_server")).to_contain_text("sends through Google's server")
    page.goto("/aliases")
    card = page.locator(f"#alias-{alias_id}")
    assert f"Signed in with Google as {email}" in card.inner_text()
    assert card.get_by_role("link", name="Reconnect").count() == 0
    shoot(page, "alias-card-signed-in")

    # A send goes out with XOAUTH2: the SASL string names the user and a live token.
    send(page, "reader@example.org", "First with a token")
    page.locator(".message-state", has_text="sent").wait_for(timeout=20_000)
    wait_until(lambda: any(m.rcpt_tos == ["reader@example.org"] for m in recorder.messages))
    sasl = recorder.xoauth2_payloads[-1]
    match = re.fullmatch(rb"user=([^\x01]+)\x01auth=Bearer ([^\x01]+)\x01\x01", sasl)
    assert match is not None, sasl
    assert match.group(1).decode() == email
    assert google.is_active(match.group(2).decode())

    # The user removes sendas's access at Google: the next send waits, nothing fails.
    assert google.revoke(email) >= 1
    second = send(page, "reader2@example.org", "Second after the revoke")
    card = page.locator(f"#alias-{alias_id}")
    reconnect = card.get_by_role("link", name="Reconnect")

    def reconnect_shown() -> bool:
        page.goto("/aliases")
        return bool(reconnect.count())

    wait_until(reconnect_shown)  # once the worker has met the refusal
    assert "Google no longer accepts this alias's sign-in" in card.inner_text()
    assert is_focusable(reconnect)
    page.goto(second)
    state = page.locator(".message-state").inner_text()
    assert state == "queued", state
    assert not any(m.rcpt_tos == ["reader2@example.org"] for m in recorder.messages)
    page.goto("/aliases")
    shoot(page, "alias-card-needs-reauth")

    # Reconnect: the same consent, and the waiting message goes out by itself.
    page.locator(f"#alias-{alias_id}").get_by_role("link", name="Reconnect").click()
    consent(page, google, email)
    page.wait_for_url("**/aliases")
    card = page.locator(f"#alias-{alias_id}")
    assert f"Signed in with Google as {email}" in card.inner_text()
    assert card.get_by_role("link", name="Reconnect").count() == 0
    page.goto(second)
    page.locator(".message-state", has_text="sent").wait_for(timeout=20_000)
    wait_until(lambda: any(m.rcpt_tos == ["reader2@example.org"] for m in recorder.messages))
    token = re.search(rb"auth=Bearer ([^\x01]+)", recorder.xoauth2_payloads[-1])
    assert token is not None and google.is_active(token.group(1).decode())
