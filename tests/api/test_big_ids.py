"""Ids and offsets the database cannot hold (2^63 and more, negative, zero) answer 404 or
422 on every route, never 500 (the driver would overflow)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.api.test_route_matrix import ADMIN, RULES, UNSAFE
from tests.api.world import make_objects
from tests.conftest import Person
from tests.web.test_pages import csrf_of

BAD_IDS = [2**63, 2**64, -1, 0, 2**63 - 1]
ID_PARAM = re.compile(r"\{(\w+_id)\}")
ID_ROUTES = sorted(r for r in RULES if ID_PARAM.search(r))


@pytest.fixture
def browser(client: TestClient, admin: Person, alice: Person) -> tuple[TestClient, str]:
    """Alice's browser session and its CSRF token (pages); the API uses her token."""
    web = TestClient(client.app, follow_redirects=False)
    token = csrf_of(web.get("/login").text)
    r = web.post(
        "/login", data={"csrf": token, "email": alice.email, "password": "correct horse battery"}
    )
    assert r.status_code == 303
    return web, csrf_of(web.get("/compose").text)


def test_every_route_with_an_id_is_checked() -> None:
    assert len(ID_ROUTES) >= 25


@pytest.mark.parametrize("bad", BAD_IDS)
def test_ids_out_of_range_are_404(
    client: TestClient, alice: Person, admin: Person, browser: tuple[TestClient, str], bad: int
) -> None:
    make_objects(client, alice)  # real rows, so a lookup has something to miss
    web, token = browser
    wrong = []
    for route in ID_ROUTES:
        method, path = route.split(" ", 1)
        url = ID_PARAM.sub(str(bad), path).replace("{provider}", "google")
        url = url.replace("{action}", "pause").replace("{index}", "0")
        if path.startswith("/api/"):
            body = {} if method in UNSAFE else None
            caller = admin if RULES[route] == ADMIN else alice
            r = client.request(method, url, json=body, headers=caller.headers)
        else:
            headers = {"X-CSRF-Token": token} if method in UNSAFE else {}
            r = web.request(method, url, headers=headers, data={} if method in UNSAFE else None)
        if r.status_code != 404:
            wrong.append((route, r.status_code))
    assert wrong == []


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/messages?offset=9223372036854775808", 422),
        ("/api/messages?offset=-1", 422),
        ("/api/messages?limit=9223372036854775808", 422),
        ("/api/messages?campaign_id=9223372036854775808", 200),
        ("/api/audit?limit=9223372036854775808", 422),
    ],
)
def test_offsets_and_limits_out_of_range_are_422(
    client: TestClient, alice: Person, url: str, status: int
) -> None:
    r = client.get(url, headers=alice.headers)
    assert r.status_code == status, r.text
    if status == 422:
        name = url.split("?")[1].split("=")[0]
        assert [e["loc"] for e in r.json()["detail"]] == [["query", name]]
    else:
        assert r.json()["items"] == []


def test_campaign_cursor_out_of_range_is_422(client: TestClient, alice: Person) -> None:
    objects = make_objects(client, alice)
    url = f"/api/campaigns/{objects.campaign_id}/messages?after_id={2**63}"
    r = client.get(url, headers=alice.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "after_id"]


@pytest.mark.parametrize("bad", [2**63, -1])
def test_body_ids_out_of_range_name_the_field(client: TestClient, alice: Person, bad: int) -> None:
    make_objects(client, alice)
    message = {"alias_id": bad, "to": ["ann@example.org"], "subject": "Hi", "text": "x"}
    r = client.post("/api/messages", json=message, headers=alice.headers)
    assert r.status_code in (404, 422), r.text
    r = client.post(
        "/api/aliases",
        json={
            "description": "Other",
            "alias_name": "A",
            "from_address": alice.email,
            "smtp_server": "mail.example.com:465",
            "imap_account_id": bad,
        },
        headers=alice.headers,
    )
    assert r.status_code in (404, 422), r.text


@pytest.mark.parametrize("bad", [str(2**63), "²", "-1"])
def test_page_forms_and_queries_with_big_ids(
    browser: tuple[TestClient, str], client: TestClient, alice: Person, bad: str
) -> None:
    make_objects(client, alice)
    web, token = browser
    h = {"X-CSRF-Token": token}
    assert web.get(f"/sent?page_no={bad}").status_code == 422
    assert web.get(f"/oauth/google/start?alias_id={bad}").status_code == 404
    assert web.post("/oauth/from", data={"alias_id": bad}, headers=h).status_code == 404
    for url, field in [("/compose", "alias_id"), ("/campaigns", "alias_id")]:
        r = web.post(url, data={field: bad}, headers=h)
        assert r.status_code == 422, (url, r.status_code)
    for url, field in [("/aliases/save", "alias_id"), ("/imap/save", "account_id")]:
        r = web.post(url, data={field: bad}, headers=h)
        assert r.status_code in (404, 422), (url, r.status_code)
