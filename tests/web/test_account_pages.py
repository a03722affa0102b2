"""The account page (own password, API tokens) and the admin's user actions, without a
browser: what a user sees on the answers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from sendas.context import AppContext
from tests.conftest import Person
from tests.web.test_pages import csrf_of
from tests.web.test_sessions import PASSWORD, browser, log_in

SignIn = Callable[[str], tuple[TestClient, str]]


@pytest.fixture
def sign_in(ctx: AppContext) -> Iterator[SignIn]:
    """Log a user in on a new client (closed after the test); returns it and its CSRF."""
    with ExitStack() as stack:

        def open_one(email: str) -> tuple[TestClient, str]:
            web = stack.enter_context(browser(ctx))
            assert log_in(web, email).status_code == 303
            return web, csrf_of(web.get("/account").text)

        yield open_one


def test_tokens_are_created_shown_once_listed_and_revoked(
    ctx: AppContext, sign_in: SignIn, admin: Person, alice: Person
) -> None:
    web, csrf = sign_in(alice.email)
    r = web.post("/account/tokens", data={"csrf": csrf, "name": "CRM sync", "expires_in": "30"})
    assert r.status_code == 200
    token = re.search(r"<code>(sas_[^<]+)</code>", r.text)
    assert token, "the new token is not shown"
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    assert web.get("/api/me", headers=headers).status_code == 200

    page = web.get("/account").text
    assert "CRM sync" in page and token.group(1) not in page  # shown once only
    listed = web.get("/api/tokens", headers=headers).json()
    crm = next(t for t in listed if t["name"] == "CRM sync")
    assert crm["expires_at"] is not None

    r = web.post(f"/account/tokens/{crm['id']}/revoke", data={"csrf": csrf})
    assert r.status_code == 303
    assert web.get("/api/me", headers=headers).status_code == 401
    assert "Token revoked" in web.get("/account").text


def test_another_users_token_cannot_be_revoked_from_the_page(
    ctx: AppContext, sign_in: SignIn, admin: Person, alice: Person, bob: Person
) -> None:
    web, csrf = sign_in(bob.email)
    with ctx.db.read() as s:
        from sendas.services import accounts

        alices = accounts.list_tokens(s, alice.id)[0].id
    r = web.post(f"/account/tokens/{alices}/revoke", data={"csrf": csrf})
    assert r.status_code == 404
    assert web.get("/api/me", headers=alice.headers).status_code == 200


def test_password_change_on_the_page(
    ctx: AppContext, sign_in: SignIn, admin: Person, alice: Person
) -> None:
    web, csrf = sign_in(alice.email)
    other, _ = sign_in(alice.email)
    r = web.post(
        "/account/password",
        data={
            "csrf": csrf,
            "current_password": "wrong",
            "new_password": "new secret 123",
            "new_password_again": "new secret 123",
        },
    )
    assert r.status_code == 422 and "is not your current password" in r.text
    r = web.post(
        "/account/password",
        data={
            "csrf": csrf,
            "current_password": PASSWORD,
            "new_password": "new secret 123",
            "new_password_again": "new secret 123",
        },
    )
    assert r.status_code == 303
    assert "Password changed" in web.get("/account").text
    assert other.get("/account").headers["location"].startswith("/login")  # signed out


def test_admin_disables_enables_resets_and_cannot_lock_out_the_last_admin(
    ctx: AppContext, sign_in: SignIn, admin: Person, alice: Person
) -> None:
    web, csrf = sign_in(admin.email)
    victim, _ = sign_in(alice.email)

    r = web.post(f"/admin/users/{alice.id}", data={"csrf": csrf, "action": "disable"})
    assert r.status_code == 303
    assert victim.get("/aliases").headers["location"].startswith("/login")
    row = re.search(rf'<tr id="user-{alice.id}">.*?</tr>', web.get("/admin/users").text, re.S)
    assert row and "disabled" in row.group(0) and ">Enable<" in row.group(0)

    r = web.post(f"/admin/users/{alice.id}", data={"csrf": csrf, "action": "enable"})
    assert r.status_code == 303
    r = web.post(f"/admin/users/{alice.id}", data={"csrf": csrf, "action": "reset-password"})
    assert r.status_code == 200
    new = re.search(r'id="user-reset">.*?<code>([^<]+)</code>', r.text)
    assert new
    with browser(ctx) as c:
        assert log_in(c, alice.email, new.group(1)).status_code == 303

    r = web.post(f"/admin/users/{admin.id}", data={"csrf": csrf, "action": "disable"})
    assert r.status_code == 422 and "last active admin" in r.text
    r = web.post(f"/admin/users/{admin.id}", data={"csrf": csrf, "action": "make-user"})
    assert r.status_code == 422
    assert (
        web.post("/admin/users/9999", data={"csrf": csrf, "action": "disable"}).status_code == 404
    )


def test_users_cannot_reach_the_admin_actions(
    ctx: AppContext, sign_in: SignIn, admin: Person, alice: Person
) -> None:
    web, csrf = sign_in(alice.email)
    r = web.post(f"/admin/users/{admin.id}", data={"csrf": csrf, "action": "disable"})
    assert r.status_code == 404
    assert web.get("/api/me", headers=admin.headers).json()["disabled"] is False
