"""Log in, set up aliases with a preset, Test Connection, defaults, CSRF: in Chromium."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import SMTP_PASSWORD, SMTP_USER, LiveServer, MailSink, login, shoot

pytestmark = pytest.mark.browser


def fill_alias(page: Any, sink: MailSink, description: str, *, password: str) -> None:
    page.get_by_label("Description").fill(description)
    page.get_by_label("Alias Name").fill("Dana Smith")
    page.get_by_label("From Address").fill(SMTP_USER)
    page.get_by_label("Provider (fills in the server for you)").select_option(label="Fastmail")
    server = page.get_by_label("SMTP Server:Port")
    assert server.input_value() == "smtp.fastmail.com:465"
    assert page.get_by_label("Encryption", exact=True).input_value() == "implicit"
    assert page.get_by_label("Delay Between Emails (milliseconds)").input_value() == "1000"
    # The local test server speaks STARTTLS on its own port: adjust, as a user would.
    server.fill(sink.server)
    page.locator("summary", has_text="Advanced").click()
    page.get_by_label("Encryption", exact=True).select_option("starttls")
    page.get_by_label("SMTP User Name").fill(SMTP_USER)
    page.get_by_label("SMTP Password").fill(password)


def test_login_page_refuses_wrong_password(page: Any, live_server: LiveServer) -> None:
    email = live_server.new_user("wrong")
    page.goto("/aliases")
    page.wait_for_url("**/login?next=/aliases")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Log in").click()
    assert page.locator("#login-error").inner_text() == "Wrong email or password."
    shoot(page, "login")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/aliases")
    assert page.get_by_role("heading", name="No alias yet").is_visible()
    shoot(page, "aliases-empty")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto("/aliases")
    page.wait_for_url("**/login?next=/aliases")


def test_alias_preset_test_connection_save_and_default(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    login(page, live_server.new_user("alias"))
    page.locator("summary", has_text="Action").click()
    page.get_by_role("link", name="Add alias").click()
    page.wait_for_url("**/aliases/new")
    assert "OAuth is not configured" in page.locator("#help-google").inner_text()

    # A wrong password: the failed step, the server's reply and a hint, no reload.
    fill_alias(page, mail_sink, "Sales desk", password="wrong password")
    page.get_by_role("button", name="Test Connection").click()
    result = page.locator("#test-result .test-result")
    result.wait_for()
    assert "Status: FAILED" in result.inner_text()
    assert result.locator(".step").inner_text() == "auth"
    assert "535" in result.locator(".reply").inner_text()
    assert result.locator(".hint").inner_text().strip()
    assert page.get_by_label("Description").input_value() == "Sales desk"  # not reloaded
    shoot(page, "alias-test-failed")

    page.get_by_label("SMTP Password").fill(SMTP_PASSWORD)
    page.get_by_role("button", name="Test Connection").click()
    page.locator("#test-result .test-result.ok").wait_for()
    assert "Status: OK" in page.locator("#test-result").inner_text()
    shoot(page, "alias-edit")

    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/aliases")
    card = page.locator(".alias-card", has_text="Sales desk")
    assert card.locator(".badge.default").is_visible()  # the first alias is the default
    assert "Dana Smith <mailer@example.test>" in card.locator(".from").inner_text()

    # A second alias, then make it the default: the badge moves.
    page.goto("/aliases/new")
    fill_alias(page, mail_sink, "Support", password=SMTP_PASSWORD)
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/aliases")
    support = page.locator(".alias-card", has_text="Support")
    assert support.locator(".badge.default").count() == 0
    support.get_by_role("button", name="Make default").click()
    page.wait_for_url("**/aliases")
    assert page.locator(".alias-card", has_text="Support").locator(".badge.default").is_visible()
    assert page.locator(".alias-card", has_text="Sales desk").locator(".badge.default").count() == 0

    # Test a saved alias from its card: the card's "Last test" shows the outcome.
    card = page.locator(".alias-card", has_text="Support")
    assert "never tested" in card.locator(".last-test").inner_text()
    card.get_by_role("button", name="Test connection").click()
    page.wait_for_url("**/aliases")
    last_test = page.locator(".alias-card", has_text="Support").locator(".last-test")
    assert "OK" in last_test.inner_text()
    shoot(page, "aliases")

    # Edit: the password is write-only (shown as stored, never sent back).
    page.get_by_role("link", name="Edit alias Sales desk").click()
    assert page.locator("#password-stored").is_visible()
    assert page.get_by_label("SMTP Password").input_value() == ""
    assert SMTP_PASSWORD not in page.content()


def test_field_errors_keep_what_was_typed(page: Any, live_server: LiveServer) -> None:
    login(page, live_server.new_user("errors"))
    page.goto("/aliases/new")
    page.get_by_label("Description").fill("Oops")
    page.get_by_label("From Address").fill("not-an-address")
    page.get_by_label("SMTP Server:Port").fill("imap.gmail.com:465")
    assert "incoming-mail server" in page.locator("#server-warning").inner_text()
    page.get_by_label("SMTP Password").fill("typed secret")
    page.get_by_label("Delay Between Emails (milliseconds)").fill("soon")
    page.get_by_label("My provider allows").fill("30")
    assert "60,000 ms ÷ 30 = 2,000 ms" in page.locator("#rate-math").inner_text()
    page.get_by_role("button", name="Save").click()
    page.locator("#err-from_address").filter(has_text=re.compile(".+")).wait_for()
    assert "whole number" in page.locator("#err-delay_ms").inner_text()
    assert page.get_by_label("SMTP Password").input_value() == "typed secret"
    assert page.get_by_label("Description").input_value() == "Oops"
    shoot(page, "alias-errors")
    page.get_by_role("button", name="Use this delay").click()
    assert page.get_by_label("Delay Between Emails (milliseconds)").input_value() == "2000"


def test_writes_without_csrf_token_are_refused(page: Any, live_server: LiveServer) -> None:
    login(page, live_server.new_user("csrf"))
    # The browser's own cookie, no token: the page route and the API both refuse.
    r = page.request.post("/aliases/save", form={"description": "Sneaky"})
    assert r.status == 403
    r = page.request.post("/api/aliases", data={"description": "Sneaky"})
    assert r.status == 403
    page.goto("/aliases")
    assert page.locator(".alias-card").count() == 0
    # With the page's token, the same session can use the JSON API (htmx/fetch).
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(
        "/api/aliases",
        headers={"X-CSRF-Token": token},
        data={"description": "Fine", "from_address": "a@example.com", "smtp_server": "h:587"},
    )
    assert r.status == 201
    # Without a session at all, an outsider gets nothing.
    outsider = httpx.post(live_server.url + "/aliases/save", data={"csrf": token})
    assert outsider.status_code == 303
    assert outsider.headers["location"] == "/login"


def test_a_new_server_needs_the_password_again(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    from tests.servers.process import free_port

    login(page, live_server.new_user("rebind"))
    page.goto("/aliases/new")
    fill_alias(page, mail_sink, "Bound", password=SMTP_PASSWORD)
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/aliases")
    page.get_by_role("link", name="Edit alias Bound").click()
    page.wait_for_url(re.compile(r"/aliases/\d+$"))
    edit_url = page.url
    elsewhere = f"127.0.0.1:{free_port()}"
    page.get_by_label("SMTP Server:Port").fill(elsewhere)

    # Test Connection of the unsaved change: not with the stored password.
    page.get_by_role("button", name="Test Connection").click()
    error = page.locator("#err-smtp_password").filter(has_text=re.compile(".+"))
    error.wait_for()
    assert "enter the password again" in error.inner_text()
    assert "Not tested" in page.locator("#test-result").inner_text()

    # Save: refused at the password field, what was typed stays.
    page.get_by_role("button", name="Save").click()
    error = page.locator("#err-smtp_password").filter(has_text=re.compile(".+"))
    error.wait_for()
    assert "the server changed: enter the password again" in error.inner_text()
    assert page.get_by_label("SMTP Server:Port").input_value() == elsewhere
    page.goto(edit_url)
    assert page.get_by_label("SMTP Server:Port").input_value() == mail_sink.server  # unchanged


def test_add_an_imap_account_from_inside_the_alias_form_keeps_what_was_typed(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    login(page, live_server.new_user("dialog"))
    page.goto("/aliases/new")
    form = page.locator("#alias-form")
    form.get_by_label("Description").fill("Recruiting desk")
    form.get_by_label("Alias Name").fill("Dana Smith")
    form.get_by_label("From Address").fill(SMTP_USER)
    form.get_by_label("SMTP Server:Port").fill(mail_sink.server)
    form.get_by_label("SMTP User Name").fill(SMTP_USER)
    form.get_by_label("SMTP Password").fill(SMTP_PASSWORD)

    page.get_by_role("button", name="Add an IMAP account").click()
    dialog = page.get_by_role("dialog", name="Add an IMAP account")
    dialog.wait_for()
    # A missing server is marked in the dialog, not in the alias form: by Test and by Add.
    dialog.get_by_label("User Name").fill("dana@example.com")
    dialog.get_by_role("button", name="Test", exact=True).click()
    dialog.locator("#imap-dialog-test .test-result.failed").wait_for()
    assert "Not tested" in dialog.locator("#imap-dialog-test").inner_text()
    dialog.locator("#err-imap-imap_server:not(:empty)").wait_for()
    assert page.locator("#err-description").inner_text() == ""
    dialog.get_by_role("button", name="Add and select").click()
    # Once its answer is in, the page focuses the first marked field: typing goes on after
    # that (the error shown by Test is already there, so waiting for it would not wait; a
    # field filled meanwhile lost its text to the focus moving).
    expect(dialog.get_by_label("IMAP Server:Port")).to_be_focused()
    dialog.locator("#err-imap-imap_server:not(:empty)").wait_for()
    assert page.locator("#err-description").inner_text() == ""
    dialog.get_by_label("Description").fill("Dana's mailbox")
    dialog.get_by_label("IMAP Server:Port").fill("imap.example.com")
    dialog.get_by_label("Password").fill("imap secret 9")
    dialog.get_by_role("button", name="Add and select").click()
    dialog.wait_for(state="hidden")

    select = page.locator("#f-imap_account_id")
    selected = select.locator("option:checked").inner_text()
    assert selected == "Dana's mailbox (imap.example.com:993)"
    # What was typed in the alias form is all still there.
    assert form.get_by_label("Description").input_value() == "Recruiting desk"
    assert form.get_by_label("Alias Name").input_value() == "Dana Smith"
    assert form.get_by_label("SMTP Server:Port").input_value() == mail_sink.server
    assert form.get_by_label("SMTP Password").input_value() == SMTP_PASSWORD
    shoot(page, "alias-imap-added")
    # Saving the alias keeps the new account.
    form.get_by_role("button", name="Save").click()
    page.wait_for_url("**/aliases")
    with live_server.ctx.db.read() as s:
        from sqlalchemy import select as sql_select

        from sendas.db.models import Alias, ImapAccount

        alias = s.scalars(sql_select(Alias).where(Alias.description == "Recruiting desk")).one()
        account = s.get(ImapAccount, alias.imap_account_id)
        assert account is not None and account.description == "Dana's mailbox"


def test_automatic_encryption_found_by_the_test_is_saved_when_accepted(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    login(page, live_server.new_user("found"))
    page.goto("/aliases/new")
    form = page.locator("#alias-form")
    form.get_by_label("Description").fill("Found mode")
    form.get_by_label("From Address").fill(SMTP_USER)
    form.get_by_label("SMTP Server:Port").fill(mail_sink.server)
    form.get_by_label("SMTP User Name").fill(SMTP_USER)
    form.get_by_label("SMTP Password").fill(SMTP_PASSWORD)
    assert form.get_by_label("Encryption", exact=True).input_value() == "auto"
    form.get_by_role("button", name="Test Connection").click()
    found = page.locator("#test-result .tls-found")
    found.wait_for()
    assert "the server speaks STARTTLS" in found.inner_text()
    page.get_by_role("button", name="Use “STARTTLS” from now on").click()
    page.wait_for_url("**/aliases")
    card = page.locator(".card", has_text="Found mode")
    assert card.locator(".encryption").inner_text() == "STARTTLS"


def test_connections_at_once_for_a_relay_and_refused_with_a_delay(
    page: Any, live_server: LiveServer
) -> None:
    login(page, live_server.new_user("relay"))
    page.goto("/aliases/new")
    page.get_by_label("Description").fill("Relay")
    page.get_by_label("From Address").fill("relay@example.com")
    page.get_by_label("SMTP Server:Port").fill("smtp.example.com:587")
    page.get_by_label("SMTP User Name").fill("relay@example.com")
    page.get_by_label("SMTP Password").fill("relay secret")
    page.locator("summary", has_text="Advanced").click()
    field = page.get_by_label("Connections at Once")
    assert field.input_value() == "1"
    assert "keep 1" in page.locator("#help-max_connections").inner_text()
    page.get_by_label("Delay Between Emails (milliseconds)").fill("1000")
    field.fill("3")
    page.get_by_role("button", name="Save").click()
    page.locator("#err-max_connections").filter(has_text=re.compile(".+")).wait_for()
    assert "delay" in page.locator("#err-max_connections").inner_text()
    expect(field).to_be_focused()  # the page moves there once settled: type after that
    page.get_by_label("Delay Between Emails (milliseconds)").fill("0")
    page.get_by_label("SMTP Password").fill("relay secret")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/aliases$"))
    assert "up to 3 at once" in page.locator(".max-connections").inner_text()
