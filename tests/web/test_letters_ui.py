"""Form letters in Chromium: an Excel CSV with merge-field buttons, focus that survives the
progress refresh, and the history of letters."""

from __future__ import annotations

import email
import email.policy
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import LiveServer, MailSink, login, shoot
from tests.web.test_mail_ui import make_alias

pytestmark = pytest.mark.browser

EXCEL = (
    "E-mail Address;First Name;Company\r\n"
    "zoe@example.net;Zoë;Acme\r\n"
    "nobody;No;Body\r\n"
    "jose@example.net;José;Café Olé\r\n"
).encode("cp1252")


def _nav(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def _start_letter(page: Any, count: int, prefix: str) -> None:
    _nav(page, "Form letter")
    lines = ["email,name"] + [f"{prefix}{i}@example.net,P{i}" for i in range(1, count + 1)]
    page.get_by_label("Paste recipients").fill("\n".join(lines))
    expect(page.locator("#recipients-count")).to_have_text(f"{count} recipients")
    page.get_by_label("Subject").fill(f"Note {prefix} {{{{ name }}}}")
    page.get_by_label("Message", exact=True).fill("Dear {{ name }}")
    page.get_by_role("button", name="Send form letter").click()
    page.wait_for_url(re.compile(r"/campaigns/\d+$"))


def test_excel_csv_sends_with_the_right_merge_values(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    owner = live_server.new_user("excel")
    make_alias(live_server, owner, mail_sink, "Recruiting")
    login(page, owner)
    _nav(page, "Form letter")
    page.get_by_label("Or upload a CSV file").set_input_files(
        files=[{"name": "contacts.csv", "mimeType": "text/csv", "buffer": EXCEL}]
    )
    expect(page.locator("#recipients-count")).to_have_text("2 recipients · 1 bad line")
    chips = page.get_by_role("group", name=re.compile("^Merge fields")).get_by_role("button")
    expect(chips).to_have_text(["email", "first_name", "company"])
    page.locator(".bad-lines summary").click()
    expect(page.locator(".bad-lines li")).to_have_text([re.compile(r"^Line 3: 'nobody' is not")])

    subject = page.get_by_label("Subject")
    subject.fill("Hello ")
    subject.focus()
    page.get_by_role("button", name="first_name").click()  # inserted where the caret was
    expect(subject).to_have_value("Hello {{ first_name }}")
    message = page.get_by_label("Message", exact=True)
    message.fill("Dear {{ first_name }}, greetings to ")
    message.focus()
    page.get_by_role("button", name="company").click()
    expect(message).to_have_value("Dear {{ first_name }}, greetings to {{ company }}")
    page.get_by_label("Skip invalid lines").check()
    shoot(page, "form-letter-excel")
    page.get_by_role("button", name="Send form letter").click()
    page.wait_for_url(re.compile(r"/campaigns/\d+$"))
    expect(page.locator(".skipped-lines li")).to_have_text([re.compile(r"^Line 3: ")])

    for address, name, company in [
        ("zoe@example.net", "Zoë", "Acme"),
        ("jose@example.net", "José", "Café Olé"),
    ]:
        received = mail_sink.wait_for(address)
        msg = email.message_from_bytes(received[0].data, policy=email.policy.default)
        assert msg["Subject"] == f"Hello {name}"
        body = msg.get_body(("plain",))
        assert (
            body is not None
            and body.get_content().strip() == f"Dear {name}, greetings to {company}"
        )
    assert mail_sink.to("nobody") == []


def test_focus_on_pause_survives_progress_refreshes(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    owner = live_server.new_user("focus")
    make_alias(live_server, owner, mail_sink, "Slow", delay_ms=700)
    login(page, owner)
    _start_letter(page, 12, "fo")
    # Count the refreshes of the numbers on the page itself (up to 4: the test waits for 4).
    page.evaluate(
        """() => { let n = 0;
        document.addEventListener('htmx:afterSwap', (ev) => {
          if (ev.detail.target.id === 'progress-numbers' && n < 4) {
            n += 1; document.body.dataset.numberSwaps = String(n); } }); }"""
    )
    pause = page.get_by_role("button", name="Pause")
    pause.focus()
    before = page.locator(".count-sent").all_inner_texts()
    expect(page.locator("body")).to_have_attribute("data-number-swaps", "4", timeout=30_000)
    mail_sink.wait_for("fo3@example.net")
    expect(page.locator(".count-sent")).not_to_have_text(before or ["0"])  # the numbers moved
    expect(pause).to_be_focused()  # the same button, still focused
    assert page.evaluate("document.activeElement.textContent") == "Pause"

    page.keyboard.press("Enter")  # pause from the keyboard: focus moves to Resume
    expect(page.locator("#progress-title")).to_contain_text("Paused")
    expect(page.get_by_role("button", name="Resume")).to_be_focused()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel the rest").click()
    expect(page.locator("#progress-title")).to_contain_text("Cancelled")
    summary = page.locator(".outcome .summary")
    # A message already handed to the server finishes; then the line says what became of all.
    expect(summary).to_have_text(re.compile(r"^\d+ sent · \d+ cancelled$"), timeout=20_000)
    sent, cancelled = map(int, re.findall(r"\d+", summary.inner_text()))
    assert sent + cancelled == 12 and cancelled > 0
    expect(page.locator(".percent")).to_have_count(0)  # not "100% — 12 of 12 done"
    shoot(page, "campaign-cancelled")


def test_history_page_lists_letters(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    owner = live_server.new_user("history")
    make_alias(live_server, owner, mail_sink, "Bulk")
    login(page, owner)
    _start_letter(page, 2, "hi")
    page.locator(".percent", has_text="100%").wait_for(timeout=30_000)
    _start_letter(page, 3, "hj")

    _nav(page, "Letter history")
    rows = page.locator("table.letters tbody tr")
    expect(rows).to_have_count(2)
    newest, oldest = rows.nth(0), rows.nth(1)
    expect(newest.get_by_role("link")).to_have_text("Note hj {{ name }}")
    expect(oldest.get_by_role("link")).to_have_text("Note hi {{ name }}")
    expect(oldest).to_contain_text("Completed")
    expect(oldest.locator(".summary")).to_have_text("2 sent")
    expect(oldest).to_contain_text("Bulk")
    shoot(page, "letter-history")
    oldest.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Form letter: Note hi {{ name }}")


def test_the_address_column_is_chosen_when_no_header_says_email(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    owner = live_server.new_user("columns")
    make_alias(live_server, owner, mail_sink, "Main")
    login(page, owner)
    _nav(page, "Form letter")
    page.get_by_label("Paste recipients").fill(
        "Name,Work\nAnn,ann@example.net\nBen,ben@example.net"
    )
    expect(page.locator("#csv-problem")).to_contain_text("no column is named like an email")
    page.get_by_label("Column with the email addresses").focus()  # as when tabbing to it
    page.get_by_label("Column with the email addresses").select_option("Work")
    expect(page.locator("#recipients-count")).to_have_text("2 recipients")
    chips = page.get_by_role("group", name=re.compile("^Merge fields")).get_by_role("button")
    expect(chips).to_have_text(["email", "name"])
    column = page.get_by_label("Column with the email addresses")
    expect(column).to_have_value("Work")
    expect(column).to_be_focused()  # redrawn, focus kept
    page.get_by_label("Subject").fill("Hi {{ name }}")
    page.get_by_label("Message", exact=True).fill("Hello {{ name }}")
    page.get_by_role("button", name="Send form letter").click()
    page.wait_for_url(re.compile(r"/campaigns/\d+$"))
    received = mail_sink.wait_for("ben@example.net")
    msg = email.message_from_bytes(received[0].data, policy=email.policy.default)
    assert msg["Subject"] == "Hi Ben"
