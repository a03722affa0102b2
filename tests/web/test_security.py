"""One CSRF check for the pages and for the API's cookie sessions (web.security.csrf_ok)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sendas.api import create_app
from sendas.context import AppContext
from tests.conftest import Person
from tests.web.test_pages import csrf_of

WRONG = ["", "not-the-token", b"\xc3\xa9t\xc3\xa9"]  # the last one is not ASCII


@pytest.fixture
def signed_in(ctx: AppContext, admin: Person, alice: Person) -> Iterator[tuple[TestClient, str]]:
    """A browser session for alice and its CSRF token."""
    with TestClient(create_app(ctx.settings, ctx=ctx), follow_redirects=False) as web:
        token = csrf_of(web.get("/login").text)
        r = web.post(
            "/login",
            data={"csrf": token, "email": alice.email, "password": "correct horse battery"},
        )
        assert r.status_code == 303
        yield web, csrf_of(web.get("/aliases").text)


@pytest.mark.parametrize("wrong", [None, *WRONG])
def test_api_cookie_writes_need_the_header(
    signed_in: tuple[TestClient, str], wrong: str | bytes | None
) -> None:
    web, _ = signed_in
    headers = {} if wrong is None else {"X-CSRF-Token": wrong}
    r = web.post("/api/tokens", json={"name": "by cookie"}, headers=headers)  # type: ignore[arg-type]
    assert r.status_code == 403 and r.json() == {"detail": "missing or wrong CSRF token"}


def test_api_cookie_write_with_the_header(signed_in: tuple[TestClient, str]) -> None:
    web, token = signed_in
    r = web.post("/api/tokens", json={"name": "by cookie"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 201 and r.json()["name"] == "by cookie"
    # A form field does not count for the API: its bodies are JSON.
    r = web.post("/api/tokens", json={"name": "x", "csrf": token})
    assert r.status_code == 403


@pytest.mark.parametrize("wrong", [None, *WRONG])
def test_page_forms_need_the_token(
    signed_in: tuple[TestClient, str], wrong: str | bytes | None
) -> None:
    web, _ = signed_in
    as_field = {} if wrong is None or isinstance(wrong, bytes) else {"csrf": wrong}
    assert web.post("/logout", data=as_field).status_code == 403
    if wrong is not None:
        r = web.post("/logout", data={}, headers={"X-CSRF-Token": wrong})  # type: ignore[dict-item]
        assert r.status_code == 403
    assert web.get("/aliases").status_code == 200  # still signed in


@pytest.mark.parametrize("where", ["field", "header"])
def test_page_forms_take_the_token_as_field_or_header(
    signed_in: tuple[TestClient, str], where: str
) -> None:
    web, token = signed_in
    if where == "field":
        r = web.post("/logout", data={"csrf": token})
    else:
        r = web.post("/logout", data={}, headers={"X-CSRF-Token": token})
    assert r.status_code in (303, 204)
    assert web.get("/aliases").headers["location"].startswith("/login")
