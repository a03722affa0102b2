"""Test Connection results as the pages render them (HTML, no browser), against a real SMTP
server and a real Dovecot: one result type, every step of a passing test marked ok."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import trustme
from fastapi.testclient import TestClient

from sendas.api import create_app
from sendas.context import AppContext
from sendas.db.models import Alias, ImapAccount, SystemOutgoing
from tests.api.test_connection_test import LEGACY_IMAP_FAILED, LEGACY_LAST_TEST
from tests.conftest import Person
from tests.servers.dovecot import DovecotServer
from tests.web.conftest import SMTP_PASSWORD, SMTP_USER, MailSink


@pytest.fixture
def web(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx.settings, ctx=ctx), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def log_in(web: TestClient, person: Person) -> str:
    """Log in through the form; the CSRF token of the logged-in session."""
    token = csrf_of(web.get("/login").text)
    r = web.post(
        "/login",
        data={"csrf": token, "email": person.email, "password": "correct horse battery"},
    )
    assert r.status_code in (302, 303), r.text
    return csrf_of(web.get("/aliases").text)


def step_marks(html: str) -> list[tuple[str, str]]:
    """(step name, mark) for each step listed in a rendered result."""
    return re.findall(
        r'<li class="step-(?:ok|failed)"><span class="step-name">([^<]+)</span> '
        r'<span class="mark"[^>]*>([^<]+)</span>',
        html,
    )


def imap_account(api: TestClient, person: Person, dovecot: DovecotServer) -> int:
    account = dovecot.special
    r = api.post(
        "/api/imap-accounts",
        json={
            "imap_server": f"{dovecot.host}:{dovecot.imaps_port}",
            "tls": "implicit",
            "username": account.username,
            "password": account.password,
            "ca_bundle": dovecot.ca_pem,
        },
        headers=person.headers,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@pytest.mark.usefixtures("admin")  # an admin exists, so the log-in page is not first-run setup
def test_passing_test_shows_every_step_ok_and_names_the_sent_folder(
    web: TestClient,
    alice: Person,
    mail_sink: MailSink,
    web_ca: trustme.CA,
    dovecot_server: DovecotServer,
) -> None:
    imap_id = imap_account(web, alice, dovecot_server)
    body = {
        "description": "With copy",
        "alias_name": "Alice",
        "from_address": SMTP_USER,
        "smtp_server": mail_sink.server,
        "tls": "starttls",
        "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        "ca_bundle": web_ca.cert_pem.bytes().decode(),
        "imap_account_id": imap_id,
    }
    r = web.post("/api/aliases", json=body, headers=alice.headers)
    assert r.status_code == 201, r.text
    alias_id = r.json()["id"]
    csrf = log_in(web, alice)

    # The Edit Alias screen's Test Connection (the htmx fragment for #test-result).
    form = {
        "csrf": csrf,
        "alias_id": str(alias_id),
        **{k: str(v) for k, v in body.items() if k not in ("smtp_password", "ca_bundle")},
    }
    html = web.post("/aliases/test", data=form).text
    assert "Status: OK" in html and "Status: FAILED" not in html, html
    assert "✗" not in html
    marks = step_marks(html)
    assert [name for name, _ in marks][-4:] == [
        "imap_connect",
        "imap_tls",
        "imap_login",
        "imap_find_sent",
    ]
    assert "rcpt_to" in [name for name, _ in marks]
    assert {mark for _, mark in marks} == {"✓"}
    assert html.count("<li class=") == len(marks)
    assert "Sent folder: Sent Items" in html
    assert '<strong class="sent-folder">Sent Items</strong>' in html

    # The IMAP account's own test names the folder, not the SMTP wording.
    html = web.post(f"/imap/{imap_id}/test", data={"csrf": csrf}).text
    assert "Status: OK" in html and "✗" not in html
    assert {mark for _, mark in step_marks(html)} == {"✓"}
    assert len(step_marks(html)) == 4
    assert "Copies of sent mail go to the folder" in html and "Sent Items" in html
    assert "would take mail" not in html

    # Test from the card: the card's "Last test" says OK.
    r = web.post(f"/aliases/{alias_id}/test-saved", data={"csrf": csrf})
    assert r.status_code in (302, 303)
    page = web.get("/aliases").text
    assert re.search(r'class="last-test">\s*<span class="badge st-sent">OK</span>', page), page


def test_legacy_stored_results_still_render(
    ctx: AppContext, web: TestClient, admin: Person
) -> None:
    r = web.post(
        "/api/aliases",
        json={
            "description": "Old",
            "from_address": "old@example.test",
            "smtp_server": "smtp.example.test:587",
            "smtp_username": "old@example.test",
            "smtp_password": "pw-12345",
        },
        headers=admin.headers,
    )
    alias_id = r.json()["id"]
    r = web.post(
        "/api/imap-accounts",
        json={"imap_server": "imap.example.test:993", "username": "u", "password": "pw-1"},
        headers=admin.headers,
    )
    imap_id = r.json()["id"]
    web.get("/api/system/outgoing", headers=admin.headers)  # the row exists
    with ctx.db.write() as s:
        s.get_one(Alias, alias_id).last_test = LEGACY_LAST_TEST
        s.get_one(ImapAccount, imap_id).last_test = LEGACY_IMAP_FAILED
        s.query(SystemOutgoing).one().last_test = LEGACY_LAST_TEST
    log_in(web, admin)

    page = web.get("/aliases").text
    # Times are <time> elements (shown in the viewer's zone by app.js; UTC text without it).
    when = '<time datetime="2024-05-01T14:03:00Z">2024-05-01 14:03 UTC</time>'
    assert re.search(
        r'class="last-test">\s*<span class="badge st-sent">OK</span> ' + re.escape(when), page
    ), page
    page = web.get("/imap").text
    assert f'<span class="badge st-failed">FAILED</span> {when}' in page, page
    page = web.get("/admin/outgoing").text
    assert f"Last test: OK {when}" in page, page
