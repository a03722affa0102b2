"""Page behaviour that needs no browser: first run, log-in throttle, CSRF, headers."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sendas.api import create_app
from sendas.context import AppContext
from tests.conftest import Person


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


@pytest.fixture
def web(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx.settings, ctx=ctx), follow_redirects=False) as c:
        yield c


def test_first_run_creates_the_admin_and_logs_in(web: TestClient) -> None:
    assert web.get("/aliases").headers["location"] == "/setup"
    assert web.get("/login").headers["location"] == "/setup"
    token = csrf_of(web.get("/setup").text)
    bad = web.post(
        "/setup",
        data={
            "csrf": token,
            "name": "Ada",
            "email": "ada@example.com",
            "password": "long enough",
            "password_again": "different",
        },
    )
    assert bad.status_code == 422
    assert "the two passwords differ" in bad.text
    assert 'value="ada@example.com"' in bad.text  # what was typed stays
    ok = web.post(
        "/setup",
        data={
            "csrf": token,
            "name": "Ada",
            "email": "ada@example.com",
            "password": "long enough",
            "password_again": "long enough",
        },
    )
    assert ok.headers["location"] == "/aliases"
    page = web.get("/admin/users")
    assert page.status_code == 200 and "ada@example.com" in page.text
    assert web.get("/setup").headers["location"] == "/login"  # only once


def test_login_is_throttled_per_ip_and_email(web: TestClient, admin: Person, alice: Person) -> None:
    web.app.state.login_throttle.clock = lambda: 1000.0  # type: ignore[attr-defined]  # frozen
    token = csrf_of(web.get("/login").text)
    for _ in range(5):
        r = web.post("/login", data={"csrf": token, "email": alice.email, "password": "nope"})
        assert r.status_code == 401
    r = web.post(
        "/login", data={"csrf": token, "email": alice.email, "password": "correct horse battery"}
    )
    assert r.status_code == 429
    assert "Too many attempts" in r.text
    # Another email from the same address is not blocked by alice's failures.
    r = web.post("/login", data={"csrf": token, "email": "bob@example.com", "password": "x"})
    assert r.status_code == 401


def test_forms_without_token_are_refused(web: TestClient, admin: Person) -> None:
    r = web.post("/login", data={"email": admin.email, "password": "correct horse battery"})
    assert r.status_code == 403
    token = csrf_of(web.get("/login").text)
    r = web.post(
        "/login", data={"csrf": token, "email": admin.email, "password": "correct horse battery"}
    )
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert web.post("/aliases/save", data={"description": "x"}).status_code == 403
    assert web.post("/logout", data={}).status_code == 403
    page = web.get("/aliases")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_other_users_alias_is_not_found(
    web: TestClient, admin: Person, alice: Person, bob: Person
) -> None:
    created = web.post(
        "/api/aliases",
        headers=bob.headers,
        json={"description": "Bob's", "from_address": "bob@example.com", "smtp_server": "h:587"},
    )
    assert created.status_code == 201
    token = csrf_of(web.get("/login").text)
    web.post(
        "/login", data={"csrf": token, "email": alice.email, "password": "correct horse battery"}
    )
    assert web.get(f"/aliases/{created.json()['id']}").status_code == 404
