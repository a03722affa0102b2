"""Admin screens and IMAP accounts in Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import SMTP_PASSWORD, SMTP_USER, LiveServer, MailSink, login, shoot

pytestmark = pytest.mark.browser


def test_database_outgoing_settings_test_and_save(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    login(page, live_server.new_user("boss", admin=True))
    page.get_by_role("link", name="Database outgoing").click()
    page.get_by_label("From Name").fill("Acme Robot")
    page.get_by_label("From Address").fill(SMTP_USER)
    page.get_by_label("SMTP Server:Port").fill(mail_sink.server)
    page.get_by_label("SMTP User Name").fill(SMTP_USER)
    page.get_by_label("SMTP Password").fill(SMTP_PASSWORD)
    assert page.get_by_label("Encryption", exact=True).input_value() == "auto"
    page.get_by_role("button", name="Test Connection").click()
    page.locator("#test-result .test-result.ok").wait_for()
    assert "Status: OK" in page.locator("#test-result").inner_text()
    # The sink greets and offers STARTTLS on a port of its own: "Automatic" found it.
    assert "the server speaks STARTTLS" in page.locator("#test-result .tls-found").inner_text()
    page.get_by_role("button", name="Save").click()
    page.locator(".flash", has_text="Saved the database outgoing settings").wait_for()
    assert page.get_by_text("Configured", exact=True).is_visible()
    shoot(page, "admin-outgoing")

    page.get_by_role("link", name="Users").click()
    page.get_by_label("Name").fill("New Person")
    page.get_by_label("Email").fill("newperson@example.com")
    page.get_by_role("button", name="Add user").click()
    created = page.locator("#user-created")
    assert "newperson@example.com" in created.inner_text()
    assert created.locator("code").inner_text().strip()  # the generated password, once
    shoot(page, "admin-users")


def test_imap_accounts_and_non_admin_sees_no_admin_pages(
    page: Any, live_server: LiveServer
) -> None:
    login(page, live_server.new_user("imapper"))
    assert page.get_by_role("link", name="Users").count() == 0
    assert page.request.get("/admin/users").status == 404
    page.get_by_role("navigation", name="Main").get_by_role("link", name="IMAP").click()
    page.get_by_role("link", name="Add IMAP account").click()
    page.get_by_label("Description").fill("Work mailbox")
    page.get_by_label("IMAP Server:Port").fill("imap.example.com")
    page.get_by_label("User Name").fill("me@example.com")
    page.get_by_label("Password").fill("imap secret")
    page.get_by_role("button", name="Save").click()
    page.locator(".flash", has_text="Saved the IMAP account").wait_for()
    assert page.get_by_label("IMAP Server:Port").input_value() == "imap.example.com:993"
    assert page.get_by_label("Password").input_value() == ""
    shoot(page, "imap-edit")
    page.goto("/aliases/new")
    options = page.get_by_label("IMAP Server").locator("option").all_inner_texts()
    assert any("Work mailbox" in o for o in options)
    page.goto("/imap")
    shoot(page, "imap-list")


def test_database_outgoing_sends_a_test_message_to_a_typed_address(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    login(page, live_server.new_user("sender", admin=True))
    page.goto("/admin/outgoing")
    page.get_by_label("From Address").fill(SMTP_USER)
    page.get_by_label("SMTP Server:Port").fill(mail_sink.server)
    page.get_by_label("SMTP User Name").fill(SMTP_USER)
    page.get_by_label("SMTP Password").fill(SMTP_PASSWORD)
    page.get_by_label("Encryption", exact=True).select_option("starttls")
    # Nothing saved yet: the test message goes out with the settings as typed.
    page.get_by_label("Send a test message to").fill("ops-check@example.net")
    page.get_by_role("button", name="Send a test message").click()
    result = page.locator("#send-test-result .test-result.ok")
    result.wait_for()
    assert "accepted the test message for ops-check@example.net" in result.inner_text()
    (message,) = mail_sink.wait_for("ops-check@example.net")
    assert message.mail_from == SMTP_USER
    assert b"Subject: sendas test message" in message.data
    shoot(page, "admin-outgoing-test-message")
    # A typo in the address is marked at the field, and nothing is sent.
    page.get_by_label("Send a test message to").fill("not-an-address")
    page.get_by_role("button", name="Send a test message").click()
    page.locator("#err-test_to:not(:empty)").wait_for()
    assert len(mail_sink.to("not-an-address")) == 0


def test_imap_account_is_tested_before_it_is_saved(page: Any, live_server: LiveServer) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the connection is refused
        login(page, live_server.new_user("imaptest"))
        page.goto("/imap/new")
        page.get_by_label("IMAP Server:Port").fill(f"127.0.0.1:{port}")
        page.get_by_label("User Name").fill("me@example.com")
        page.get_by_label("Password").fill("imap secret")
        page.get_by_role("button", name="Test", exact=True).click()
        failed = page.locator("#test-result .test-result.failed")
        failed.wait_for()
    assert "at step connect" in failed.inner_text()
    assert page.url.endswith("/imap/new")  # nothing saved, still the new-account form
    page.goto("/imap")
    assert page.get_by_text(f"127.0.0.1:{port}").count() == 0
