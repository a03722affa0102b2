"""The suppression list page in a real browser: add, search, remove, and a form letter
that skips a listed address and says so."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from sendas.db.models import Suppression
from sendas.schemas import MessageIn
from sendas.services import messages as message_service
from sendas.services.common import Actor
from sendas.services.users import get_user_by_email
from tests.web.conftest import SMTP_PASSWORD, LiveServer, MailSink, login, shoot
from tests.web.test_letters_ui import _nav
from tests.web.test_mail_ui import make_alias


def _bounced(live: LiveServer, owner: str, address: str) -> int:
    """A message of the owner's and the entry a hard bounce of it would leave."""
    with live.ctx.db.write() as s:
        actor = Actor.of(get_user_by_email(s, owner))
        message = message_service.send_message(
            s, actor, MessageIn(to=[address], subject="Hello", text="Hi")
        )
        s.add(
            Suppression(
                user_id=actor.id,
                address=address,
                source="bounce",
                reason="550 5.1.1 user unknown",
                message_id=message.id,
            )
        )
        return message.id


def _rows(page: Any) -> Any:
    return page.locator("table.suppressions tbody tr")


def test_add_search_and_remove_on_the_page(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    owner = live_server.new_user("suppress")
    make_alias(live_server, owner, mail_sink, "Main")
    login(page, owner)
    _nav(page, "Suppressed")
    expect(page.get_by_role("heading", level=1)).to_have_text("Suppression list")
    expect(page.locator(".empty")).to_contain_text("Nothing is suppressed")
    shoot(page, "suppressions-empty")

    # A bad address: the field says why, keeps what was typed, nothing is listed.
    page.get_by_label("Email address").fill("not an address")
    page.get_by_role("button", name="Add to the list").click()
    page.locator("#err-address").filter(has_text=re.compile(".+")).wait_for()
    expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Email address")).to_have_value("not an address")
    expect(_rows(page)).to_have_count(0)

    page.get_by_label("Email address").fill("Zed@Example.net")
    page.get_by_label("Note (optional)").fill("asked to stop")
    page.get_by_role("button", name="Add to the list").click()
    expect(page.locator(".flash")).to_contain_text("zed@example.net is on your suppression list")
    expect(_rows(page)).to_have_count(1)
    expect(_rows(page).first).to_contain_text("Added by you: asked to stop")

    # The same address again is refused at the field.
    page.get_by_label("Email address").fill("zed@example.net")
    page.get_by_role("button", name="Add to the list").click()
    expect(page.locator("#err-address")).to_contain_text("already")

    # A bounce: its code and diagnostic, and the message it came back for.
    message_id = _bounced(live_server, owner, "gone@example.net")
    page.goto("/suppressions")
    expect(_rows(page)).to_have_count(2)
    bounce = _rows(page).filter(has_text="gone@example.net")
    expect(bounce).to_contain_text("Bounced: 550 5.1.1 user unknown")
    expect(bounce.get_by_role("link", name="the message")).to_have_attribute(
        "href", f"/messages/{message_id}"
    )
    shoot(page, "suppressions-list")

    # The search box narrows the list in place (htmx).
    page.get_by_label("Search address").fill("gone")
    expect(_rows(page)).to_have_count(1)
    expect(_rows(page).first).to_contain_text("gone@example.net")
    page.get_by_label("Search address").fill("")
    expect(_rows(page)).to_have_count(2)

    page.get_by_role("button", name="Remove zed@example.net from the list").click()
    expect(page.locator(".flash")).to_contain_text("zed@example.net was taken off the list")
    expect(_rows(page)).to_have_count(1)
    assert SMTP_PASSWORD not in page.content()


def test_form_letter_skips_a_listed_address_and_says_so(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    owner = live_server.new_user("skipper")
    make_alias(live_server, owner, mail_sink, "Bulk")
    login(page, owner)
    _nav(page, "Suppressed")
    page.get_by_label("Email address").fill("skip1@example.net")
    page.get_by_role("button", name="Add to the list").click()
    expect(_rows(page)).to_have_count(1)

    _nav(page, "Form letter")
    lines = ["email,name", "skip1@example.net,A", "keep2@example.net,B"]
    page.get_by_label("Paste recipients").fill("\n".join(lines))
    # The counter says before sending what the list will skip.
    expect(page.locator("#recipients-count")).to_have_text(
        "2 recipients · 1 on your suppression list, skipped"
    )
    page.get_by_label("Subject").fill("Note {{ name }}")
    page.get_by_label("Message", exact=True).fill("Dear {{ name }}")
    page.get_by_role("button", name="Send form letter").click()
    page.wait_for_url(re.compile(r"/campaigns/\d+$"))
    expect(page.locator(".flash")).to_contain_text(
        "1 recipient(s) on your suppression list were skipped"
    )
    skipped = page.locator("#skipped-suppressed")
    expect(skipped.get_by_role("heading")).to_have_text("1 recipient was on your suppression list")
    expect(skipped.locator("li")).to_have_text(["skip1@example.net"])
    page.locator(".percent", has_text="100%").wait_for(timeout=30_000)
    assert mail_sink.to("keep2@example.net")
    assert not mail_sink.to("skip1@example.net")
    shoot(page, "letter-skipped-suppressed")
