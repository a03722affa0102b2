"""The message page without a browser: a form letter's message before it is rendered
shows its templates and the recipient's values; the HTML view carries its own policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sendas.api import create_app
from sendas.context import AppContext
from tests.api.test_messages import new_alias
from tests.conftest import Person
from tests.web.test_connection_result import log_in


@pytest.fixture
def web(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx.settings, ctx=ctx), follow_redirects=False) as c:
        yield c


def test_an_unrendered_form_letter_message_shows_its_templates_and_values(
    web: TestClient, admin: Person, alice: Person
) -> None:
    new_alias(web, alice)
    body = {
        "subject": "Hello {{ name }}",
        "text": "Dear {{ name }}, welcome.",
        "html": "<p>Dear {{ name }}</p><script>alert(1)</script>",
        "recipients": [{"email": "ann@example.org", "fields": {"name": "Ann O'Neil"}}],
    }
    letter = web.post("/api/campaigns", json=body, headers=alice.headers).json()
    items = web.get(f"/api/messages?campaign_id={letter['id']}", headers=alice.headers).json()
    mid = items["items"][0]["id"]
    log_in(web, alice)

    page = web.get(f"/messages/{mid}").text
    assert "made from the templates below and this recipient's values" in page
    assert "Dear {{ name }}, welcome." in page and "Ann O&#39;Neil" in page
    assert "<script>alert(1)</script>" not in page  # the HTML is never in the page itself
    assert f'<iframe class="body-html" sandbox src="/messages/{mid}/html"' in page

    framed = web.get(f"/messages/{mid}/html")
    assert framed.status_code == 200 and "<p>Dear {{ name }}</p>" in framed.text
    policy = framed.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; img-src data:; style-src 'unsafe-inline'")
    assert "script-src" not in policy and "sandbox" in policy
    assert framed.headers["x-frame-options"] == "SAMEORIGIN"
    # Every other page keeps the pages' own policy.
    assert (
        "frame-ancestors 'none'" in web.get(f"/messages/{mid}").headers["content-security-policy"]
    )
