"""Alias form and cards in Chromium: the sticky bar never hides a field, the Action menu,
help for a failed step, and a passing test before the first Save recorded on the card."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.conftest import SMTP_PASSWORD, LiveServer, MailSink, login
from tests.web.test_aliases_ui import fill_alias

pytestmark = pytest.mark.browser

SIZES = ({"width": 1280, "height": 900}, {"width": 390, "height": 844})

# The focused element's box, the sticky bar's box, and whether focus is inside the bar.
BOXES = """() => {
  const el = document.activeElement, bar = document.querySelector('.actions.sticky');
  const a = el.getBoundingClientRect(), b = bar.getBoundingClientRect();
  return {id: el.id || el.tagName, top: a.top, bottom: a.bottom, barTop: b.top,
          inBar: bar.contains(el), inForm: !!el.closest('#alias-form'),
          viewport: window.innerHeight};
}"""


@pytest.mark.parametrize("size", SIZES, ids=["desktop", "phone"])
def test_tabbing_never_leaves_the_focused_field_under_the_sticky_bar(
    page: Any, live_server: LiveServer, size: dict[str, int]
) -> None:
    page.set_viewport_size(size)
    login(page, live_server.new_user("tabbing"))
    page.goto("/aliases/new")
    page.locator("summary", has_text="Advanced").click()  # its fields are in the tab order too
    page.get_by_label("Description").focus()
    seen: list[str] = []
    for _ in range(60):
        box = page.evaluate(BOXES)
        if box["inBar"]:
            break
        if box["inForm"]:
            seen.append(box["id"])
            assert box["bottom"] <= box["barTop"] + 0.5, f"{box['id']} is under the bar: {box}"
            assert box["top"] >= 0, f"{box['id']} is above the screen: {box}"
        page.keyboard.press("Tab")
    else:
        raise AssertionError(f"Tab never reached the bar; focused in turn: {seen}")
    # The fields the walk reported as hidden were all visited.
    for name in ("f-reply_to", "f-smtp_username", "f-per-minute", "f-delay_ms", "f-tls"):
        assert name in seen


@pytest.mark.parametrize("size", SIZES, ids=["desktop", "phone"])
def test_a_failing_field_after_save_is_focused_in_view_and_named_as_marked(
    page: Any, live_server: LiveServer, size: dict[str, int]
) -> None:
    page.set_viewport_size(size)
    login(page, live_server.new_user("marked"))
    page.goto("/aliases/new")
    page.get_by_label("Description").fill("Typo")
    page.get_by_label("From Address").fill("not-an-address")
    page.get_by_label("SMTP Server:Port").fill("smtp.example.test:587")
    page.get_by_label("Delay Between Emails (milliseconds)").focus()  # the page scrolls down
    page.get_by_role("button", name="Save").click()
    status = page.locator("#form-status .flash-error")
    status.wait_for()
    assert status.inner_text() == "Not saved: please correct the marked fields."
    page.wait_for_function("document.activeElement.id === 'f-from_address'")
    box = page.evaluate(BOXES)
    assert box["top"] >= 0 and box["bottom"] <= box["barTop"] + 0.5, box


def test_the_sticky_bar_is_compact_on_a_phone(page: Any, live_server: LiveServer) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, live_server.new_user("phonebar"))
    page.goto("/aliases/new")
    bar = page.locator(".actions.sticky").bounding_box()
    assert bar is not None and bar["height"] <= 60, bar
    for name in ("Test Connection", "Save"):
        button = page.get_by_role("button", name=name).bounding_box()
        assert button is not None and button["x"] + button["width"] <= 390


def test_the_action_menu_closes_on_escape_and_outside_clicks(
    page: Any, live_server: LiveServer
) -> None:
    login(page, live_server.new_user("menu"))
    menu, button = page.locator("details.menu"), page.locator("details.menu summary")
    button.click()
    assert page.get_by_role("link", name="Add alias").is_visible()
    page.get_by_role("link", name="Add alias").focus()
    page.keyboard.press("Escape")
    assert menu.get_attribute("open") is None
    assert not page.get_by_role("link", name="Add alias").is_visible()
    assert page.evaluate("document.activeElement === document.querySelector('.menu summary')")
    button.click()
    assert page.get_by_role("link", name="Add alias").is_visible()
    page.locator("h1").click()
    assert menu.get_attribute("open") is None
    assert not page.get_by_role("link", name="Add alias").is_visible()


def test_a_failed_step_links_to_its_help_section(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    login(page, live_server.new_user("helpstep"))
    page.goto("/aliases/new")
    guides = page.locator("#guides")
    assert guides.get_by_role("link", name="Gmail and Google Workspace").is_visible()
    assert guides.get_by_role("link", name="Microsoft 365").is_visible()
    fill_alias(page, mail_sink, "Helpful", password="wrong password")
    page.get_by_role("button", name="Test Connection").click()
    link = page.locator("#test-result #step-help")
    link.wait_for()
    href = link.get_attribute("href")
    assert href == "/help/test-steps#step-auth"
    page.goto(href)
    section = page.locator("#step-auth")
    assert section.get_by_role("heading").inner_text().startswith("auth")
    assert "password" in section.inner_text()
    assert section.is_visible()
    page.goto("/help")
    for name in ("Gmail and Google Workspace", "Microsoft 365", "When Test Connection fails"):
        page.get_by_role("link", name=re.compile(name)).first.wait_for()
    page.goto("/help/microsoft-365")
    assert "Authenticated SMTP" in page.locator("#authenticated-smtp").inner_text()
    assert page.goto("/help/nothing-here").status == 404


def test_a_passing_test_before_the_first_save_shows_on_the_card(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    login(page, live_server.new_user("presave"))
    page.goto("/aliases/new")
    fill_alias(page, mail_sink, "Tested first", password=SMTP_PASSWORD)
    page.get_by_label("Reply to Address").fill("team@example.test")
    page.get_by_role("button", name="Test Connection").click()
    page.locator("#test-result .test-result.ok").wait_for()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/aliases")
    card = page.locator(".alias-card", has_text="Tested first")
    assert re.match(r"OK \d{4}-\d\d-\d\d", card.locator(".last-test").inner_text().strip())
    assert card.locator(".tls").inner_text() == "STARTTLS"
    assert card.locator(".reply-to").inner_text() == "team@example.test"

    # Tested, then the password changed before saving: that test says nothing about it.
    page.goto("/aliases/new")
    fill_alias(page, mail_sink, "Changed after", password=SMTP_PASSWORD)
    page.get_by_role("button", name="Test Connection").click()
    page.locator("#test-result .test-result.ok").wait_for()
    page.get_by_label("SMTP Password").fill("another password")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/aliases")
    card = page.locator(".alias-card", has_text="Changed after")
    assert card.locator(".last-test").inner_text().strip() == "never tested"
