"""An opened message in Chromium: what was sent (headers, text, the HTML sandboxed,
attachments), the attempts, why it waits, times in the viewer's zone, and 404 for others."""

from __future__ import annotations

import base64
import re
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from sendas.db.models import Alias, Message
from sendas.schemas import MessageIn
from sendas.services import aliases as alias_service
from sendas.services import messages as message_service
from sendas.services.common import Actor
from sendas.services.users import get_user_by_email
from tests.web.conftest import LiveServer, MailSink, login
from tests.web.test_mail_ui import make_alias

pytestmark = pytest.mark.browser

HTML = (
    '<p id="hello">Hello in <b>HTML</b></p>'
    "<script>parent.document.title = 'script ran'; "
    "document.body.setAttribute('data-ran', 'yes');</script>"
)


def send(live: LiveServer, owner: str, **fields: Any) -> int:
    with live.ctx.db.write() as s:
        actor = Actor.of(get_user_by_email(s, owner))
        data = MessageIn.model_validate({"to": ["reader@example.org"], **fields})
        return message_service.send_message(s, actor, data).id


def message_row(live: LiveServer, message_id: int) -> Message:
    with live.ctx.db.read() as s:
        row = s.get_one(Message, message_id)
        s.expunge(row)
        return row


def wait_sent(live: LiveServer, message_id: int) -> Message:
    deadline = time.monotonic() + 30
    while (row := message_row(live, message_id)).status != "sent":
        assert time.monotonic() < deadline, f"message {message_id} is {row.status}"
        time.sleep(0.1)
    return row


def test_an_opened_sent_message_shows_what_was_sent_in_the_viewers_zone(
    browser: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    owner = live_server.new_user("reader")
    make_alias(live_server, owner, mail_sink, "Main")
    mid = send(
        live_server,
        owner,
        cc=["copy@example.org"],
        subject="Figures for March",
        text="Plain words.\nSecond line.",
        html=HTML,
        attachments=[
            {
                "filename": "q3.csv",
                "content_type": "text/csv",
                "content_base64": base64.b64encode(b"a,b\n1,2\n").decode(),
            }
        ],
    )
    row = wait_sent(live_server, mid)
    assert row.sent_at is not None

    context = browser.new_context(base_url=live_server.url, timezone_id="Asia/Tokyo")
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        login(page, owner)
        page.goto(f"/messages/{mid}")
        title = page.title()
        expect(page.locator(".message-state")).to_have_text("sent")
        expect(page.locator(".attempts")).to_have_text("1")
        expect(page.locator("pre.body-text")).to_have_text("Plain words.\nSecond line.")
        headers = page.locator("dl.headers")
        expect(headers).to_contain_text("Figures for March")
        expect(headers).to_contain_text("copy@example.org")
        expect(headers).to_contain_text(row.message_id)

        # The sent time, converted by the browser to Tokyo time (UTC+9, no daylight time).
        tokyo = row.sent_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M")
        sent = page.locator("#message-status dt", has_text="Sent").locator("xpath=../dd/time")
        expect(sent).to_have_text(re.compile(re.escape(tokyo) + r" GMT\+9"))

        # The HTML part is shown framed and sandboxed: its script never runs.
        frame_el = page.locator("iframe.body-html")
        assert frame_el.get_attribute("sandbox") == ""
        frame = page.frame_locator("iframe.body-html")
        expect(frame.locator("#hello")).to_have_text("Hello in HTML")
        expect(frame.locator("body[data-ran]")).to_have_count(0)
        assert page.title() == title != "script ran"
        direct = page.request.get(f"/messages/{mid}/html")
        policy = direct.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "sandbox" in policy

        # The attachment, by name and size, downloadable by its owner.
        link = page.get_by_role("link", name="q3.csv")
        expect(page.locator(".attachments")).to_contain_text("8 bytes")
        got = page.request.get(link.get_attribute("href"))
        assert got.status == 200 and got.body() == b"a,b\n1,2\n"
        assert "attachment" in got.headers["content-disposition"]

        # The Sent log shows the same zone.
        page.goto("/sent")
        queued = row.created_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M")
        expect(page.locator("td[data-label=Queued] time").first).to_contain_text(queued)
    finally:
        context.close()

    # Another user: the page, its HTML and its attachment do not exist for them.
    other = live_server.new_user("stranger")
    context = browser.new_context(base_url=live_server.url)
    try:
        page = context.new_page()
        login(page, other)
        for path in ("", "/html", "/attachments/0"):
            assert page.request.get(f"/messages/{mid}{path}").status == 404, path
        assert page.request.get(f"/api/messages/{mid}").status == 404
    finally:
        context.close()


def test_a_message_behind_an_alias_that_needs_attention_says_why(
    page: Any, live_server: LiveServer, mail_sink: MailSink
) -> None:
    owner = live_server.new_user("waiter")
    make_alias(live_server, owner, mail_sink, "Refused")
    with live_server.ctx.db.write() as s:
        actor = Actor.of(get_user_by_email(s, owner))
        (alias,) = alias_service.list_aliases(s, actor)
        s.get_one(Alias, alias.id).needs_reauth = True
    mid = send(live_server, owner, subject="Waiting one", text="Later.")

    login(page, owner)
    page.goto(f"/messages/{mid}")
    expect(page.locator(".message-state")).to_have_text("queued")
    waiting = page.locator(".waiting")
    expect(waiting).to_contain_text("Why it is waiting")
    expect(waiting).to_contain_text("the alias needs attention: its server refused the sign-in")
    expect(waiting.get_by_role("link", name="Open the alias")).to_have_attribute(
        "href", f"/aliases/{alias.id}"
    )
    expect(page.locator(".attempts")).to_have_text("0 (not tried yet)")
    assert message_row(live_server, mid).status == "queued"
