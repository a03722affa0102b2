"""Every route of the app, called as nobody, user A, user B and an admin on A's objects.

Each route (method + path, API and pages) has one rule in ``RULES``; a route without one
fails ``test_every_route_has_a_rule``, so a new route cannot go in unreviewed. The rules:

- ``PUBLIC``: anyone gets an answer, neither 403 nor 5xx (the log-in form may answer 401
  to wrong credentials).
- ``USER``: nobody is refused (401 on the API, a redirect to /login on pages); every signed-in
  user reaches it (on their own data).
- ``ADMIN``: nobody is refused; users get 403 (API) or the 404 page; admins reach it.
- ``OWNER``: the path names one of A's objects: nobody is refused, B and the admin get 404,
  A reaches it.

A new route gets its line here; a new path parameter its value in
``tests.api.world.PATH_VALUES`` (or ``PATH_VALUES_BY_ROUTE``); a body that names an object
its fields in ``BODY_IDS``.

"Reaches it" means an answer that is none of 401, 403, 404 or 5xx. Refused calls change
nothing in the database. A cookie-session write without the CSRF token is refused (403) on
every route with a body-carrying method and changes nothing.

API routes are called with bearer tokens, pages with a logged-in browser session (the CSRF
token in ``X-CSRF-Token``). Bodies are empty (``{}`` or an empty form): authorization comes
before validation, and a 422 still counts as reached.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import MetaData, select

from sendas.api import create_app
from sendas.config import Settings
from sendas.context import AppContext
from tests.api.world import (
    LOGIN_PASSWORD,
    PATH_VALUES,
    Objects,
    World,
    build_world,
    make_objects,
    path_value,
)
from tests.conftest import Person
from tests.web.test_pages import csrf_of

PUBLIC, USER, ADMIN, OWNER = "public", "user", "admin", "owner"

# One line per route: "METHOD path" -> rule. HEAD follows GET and is not listed.
RULES: dict[str, str] = {
    # FastAPI's own pages and the static files
    "GET /openapi.json": PUBLIC,
    "GET /docs": PUBLIC,
    "GET /docs/oauth2-redirect": PUBLIC,
    "GET /redoc": PUBLIC,
    "GET /static": PUBLIC,
    "GET /healthz": PUBLIC,
    # API: users and tokens
    "GET /api/me": USER,
    "GET /api/users": ADMIN,
    "POST /api/users": ADMIN,
    "POST /api/tokens": USER,
    "GET /api/tokens": USER,
    "DELETE /api/tokens/{token_id}": OWNER,
    # API: the suppression list
    "GET /api/suppressions": USER,
    "POST /api/suppressions": USER,
    "DELETE /api/suppressions/{suppression_id}": OWNER,
    "POST /api/me/password": USER,
    "PATCH /api/users/{user_id}": ADMIN,
    # API: aliases
    "GET /api/aliases": USER,
    "POST /api/aliases": USER,
    "POST /api/aliases/test": USER,
    "POST /api/aliases/{alias_id}/test": OWNER,
    "GET /api/aliases/{alias_id}": OWNER,
    "PATCH /api/aliases/{alias_id}": OWNER,
    "DELETE /api/aliases/{alias_id}": OWNER,
    # API: IMAP accounts
    "GET /api/imap-accounts": USER,
    "POST /api/imap-accounts": USER,
    "GET /api/imap-accounts/{account_id}": OWNER,
    "PATCH /api/imap-accounts/{account_id}": OWNER,
    "DELETE /api/imap-accounts/{account_id}": OWNER,
    "POST /api/imap-accounts/{account_id}/test": OWNER,
    "POST /api/imap-accounts/test": USER,
    # API: system settings, audit
    "GET /api/system/outgoing": ADMIN,
    "PUT /api/system/outgoing": ADMIN,
    "POST /api/system/outgoing/test": ADMIN,
    "GET /api/system/oauth": ADMIN,
    "GET /api/system/oauth/{provider}": ADMIN,
    "PUT /api/system/oauth/{provider}": ADMIN,
    "GET /api/audit": USER,
    # API: campaigns and messages
    "POST /api/campaigns": USER,
    "GET /api/campaigns": USER,
    "POST /api/campaigns/preview": USER,
    "GET /api/campaigns/{campaign_id}": OWNER,
    "POST /api/campaigns/{campaign_id}/pause": OWNER,
    "POST /api/campaigns/{campaign_id}/resume": OWNER,
    "POST /api/campaigns/{campaign_id}/cancel": OWNER,
    "GET /api/campaigns/{campaign_id}/messages": OWNER,
    "POST /api/messages": USER,
    "GET /api/messages": USER,
    "GET /api/messages/{message_id}": OWNER,
    "POST /api/messages/{message_id}/resend": OWNER,
    "POST /api/messages/{message_id}/mark-sent": OWNER,
    "POST /api/system/messages": ADMIN,
    # Pages: log-in
    "GET /": USER,
    "GET /login": PUBLIC,
    "POST /login": PUBLIC,
    "POST /logout": PUBLIC,
    "GET /setup": PUBLIC,
    "POST /setup": PUBLIC,
    # Pages: aliases and IMAP accounts
    "GET /aliases": USER,
    "GET /aliases/new": USER,
    "GET /aliases/{alias_id}": OWNER,
    "POST /aliases/save": USER,
    "POST /aliases/{alias_id}/default": OWNER,
    "POST /aliases/{alias_id}/test-saved": OWNER,
    "POST /aliases/{alias_id}/delete": OWNER,
    "POST /aliases/test": USER,
    "GET /imap": USER,
    "GET /imap/new": USER,
    "GET /imap/{account_id}": OWNER,
    "POST /imap/save": USER,
    "POST /imap/{account_id}/test": OWNER,
    "POST /imap/{account_id}/delete": OWNER,
    "POST /imap/test": USER,
    "GET /imap/quick-add": USER,
    "POST /imap/quick-add": USER,
    # Pages: the user's own account, and help
    "GET /account": USER,
    "POST /account/password": USER,
    "POST /account/tokens": USER,
    "POST /account/tokens/{token_id}/revoke": OWNER,
    "GET /help": USER,
    # Pages: the suppression list
    "GET /suppressions": USER,
    "POST /suppressions": USER,
    "POST /suppressions/{suppression_id}/remove": OWNER,
    "GET /help/{topic}": USER,
    # Pages: administration
    "GET /admin/outgoing": ADMIN,
    "POST /admin/outgoing": ADMIN,
    "POST /admin/outgoing/test": ADMIN,
    "POST /admin/outgoing/send-test": ADMIN,
    "POST /admin/users/{user_id}": ADMIN,
    "GET /admin/users": ADMIN,
    "POST /admin/users": ADMIN,
    "GET /admin/oauth": ADMIN,
    "GET /admin/oauth/{provider}": ADMIN,
    "POST /admin/oauth/{provider}": ADMIN,
    # Pages: mail
    "GET /compose": USER,
    "POST /compose": USER,
    "GET /messages/{message_id}": OWNER,
    "GET /messages/{message_id}/html": OWNER,
    "GET /messages/{message_id}/attachments/{index}": OWNER,
    "POST /messages/{message_id}/resend": OWNER,
    "POST /messages/{message_id}/mark-sent": OWNER,
    "GET /sent": USER,
    "GET /campaigns/new": USER,
    "GET /campaigns": USER,
    "POST /campaigns/columns": USER,
    "POST /campaigns/preview": USER,
    "POST /campaigns": USER,
    "GET /campaigns/{campaign_id}": OWNER,
    "GET /campaigns/{campaign_id}/recipients": OWNER,
    "POST /campaigns/{campaign_id}/{action}": OWNER,
    # Pages: OAuth sign-in of an alias
    "GET /oauth/{provider}/start": USER,
    "GET /oauth/{provider}/callback": USER,
    "POST /oauth/from": OWNER,  # the alias is named in the form (BODY_IDS)
}

# Routes whose body names A's object: field -> path parameter giving its value.
BODY_IDS: dict[str, dict[str, str]] = {
    "POST /oauth/from": {"alias_id": "alias_id"},
}

_TABLES: dict[int, MetaData] = {}  # reflected once per database
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Columns a refused call may still touch: a token's last use is stamped on any call.
VOLATILE_COLUMNS = {"last_used_at", "last_seen_at"}
# Tables of the caller's own bookkeeping: a Test Connection counts against the caller's
# rate limit before the object is looked up (so probing other users' ids costs tests too).
CALLER_TABLES = {"rate_events"}


def app_routes(app: FastAPI) -> list[str]:
    """ "METHOD path" for every route of the app (HEAD left out: it follows GET)."""
    found: list[str] = []
    for route in iter_route_contexts(app.routes):
        methods = route.methods or {"GET"}  # a mount (static files) answers GET
        found.extend(f"{m} {route.path}" for m in sorted(methods) if m != "HEAD")
    return found


# --- the world, shared by the module -------------------------------------------------------


@dataclass
class Stage:
    ctx: AppContext
    app: FastAPI
    api: TestClient
    world: World
    web: dict[str, TestClient]
    csrf: dict[str, str]


def _sign_in(app: FastAPI, who: Person | None) -> tuple[TestClient, str]:
    """A browser for ``who`` (None: a visitor who opened the log-in page) and its token."""
    web = TestClient(app, follow_redirects=False)
    token = csrf_of(web.get("/login").text)
    if who is None:
        return web, token
    r = web.post("/login", data={"csrf": token, "email": who.email, "password": LOGIN_PASSWORD})
    assert r.status_code == 303, r.text
    return web, csrf_of(web.get("/compose").text)


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    data = Path(tmp_path_factory.mktemp("matrix")) / "data"
    ctx = AppContext.build(
        Settings(data_dir=data, embedded_worker=False, smtp_timeout=3.0, tests_per_minute=0)
    )
    app = create_app(ctx.settings, ctx=ctx)
    with TestClient(app, follow_redirects=False) as api:
        world = build_world(api, ctx)
        stage = Stage(ctx, app, api, world, {}, {})
        yield stage
    ctx.close()


def _browsers(stage: Stage) -> None:
    """(Re)open the browsers whose session a previous route ended (log-out, ...)."""
    people: dict[str, Person | None] = {"anon": None, **stage.world.people()}
    for name, who in people.items():
        web = stage.web.get(name)
        # The visitor's session token may change with each log-in attempt: always anew.
        if web is not None and who is not None and web.get("/api/me").status_code == 200:
            continue
        stage.web[name], stage.csrf[name] = _sign_in(stage.app, who)


def snapshot(ctx: AppContext) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, volatile columns left out."""
    meta = _TABLES.get(id(ctx))
    if meta is None:
        meta = _TABLES[id(ctx)] = MetaData()
        meta.reflect(ctx.db.engine)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with ctx.db.engine.connect() as conn:
        for name, table in meta.tables.items():
            if name in CALLER_TABLES:
                continue
            cols = [c for c in table.columns if c.name not in VOLATILE_COLUMNS]
            rows[name] = [tuple(r) for r in conn.execute(select(*cols).order_by(*cols[:1]))]
    return rows


# --- calling a route -----------------------------------------------------------------------


def url_of(path: str, objects: Objects) -> str:
    if path == "/static":
        return "/static/app.css"

    def value(m: re.Match[str]) -> str:
        found = path_value(path, m.group(1), objects)
        assert found is not None, f"no value for {{{m.group(1)}}} of {path}: see world.py"
        return str(found)

    return re.sub(r"\{(\w+)\}", value, path)


def call(stage: Stage, who: str, method: str, path: str, *, csrf: bool = True) -> Response:
    """``who`` (anon, A, B, admin) calls the route on A's objects, with an empty body (but
    for the ids of ``BODY_IDS``). ``csrf=False``: by cookie session, without the token."""
    url = url_of(path, stage.world.objects)
    fields = BODY_IDS.get(f"{method} {path}", {})
    body: dict[str, object] | None = None
    if method in UNSAFE:
        body = {k: PATH_VALUES[v](stage.world.objects) for k, v in fields.items()}
    if path.startswith("/api/") and csrf:
        headers = {} if who == "anon" else stage.world.people()[who].headers
        return stage.api.request(method, url, headers=headers, json=body)
    web = stage.web[who]
    headers = {"X-CSRF-Token": stage.csrf[who]} if csrf and body is not None else {}
    if path.startswith("/api/"):  # a cookie session on the API: JSON bodies
        return web.request(method, url, headers=headers, json=body)
    return web.request(method, url, headers=headers, data=body)


def reached(r: Response) -> bool:
    return r.status_code not in (401, 403, 404) and r.status_code < 500


def refused_nobody(path: str, r: Response) -> bool:
    if path.startswith("/api/"):
        return r.status_code == 401
    return r.status_code == 303 and r.headers["location"].startswith("/login")


def refused_user(path: str, r: Response) -> bool:
    return r.status_code == (403 if path.startswith("/api/") else 404)


def _explain(who: str, route: str, r: Response) -> str:
    return f"{who}: {route} answered {r.status_code} {r.text[:200]!r}"


# --- the tests -----------------------------------------------------------------------------


def test_every_route_has_a_rule(stage: Stage) -> None:
    routes = app_routes(stage.app)
    assert [r for r in routes if r not in RULES] == [], "routes without a rule in RULES"
    assert [r for r in RULES if r not in routes] == [], "rules for routes that are gone"


@pytest.mark.parametrize("route", sorted(RULES))
def test_route_follows_its_rule(stage: Stage, route: str) -> None:
    rule = RULES[route]
    method, path = route.split(" ", 1)
    _browsers(stage)
    stage.world.objects = make_objects(stage.api, stage.world.a)
    before = snapshot(stage.ctx)

    r = call(stage, "anon", method, path)
    if rule == PUBLIC:
        assert r.status_code != 403 and r.status_code < 500, _explain("anon", route, r)
        return
    assert refused_nobody(path, r), _explain("anon", route, r)
    if rule in (ADMIN, OWNER):
        intruders = ["B", "admin"] if rule == OWNER else ["A", "B"]
        for who in intruders:
            r = call(stage, who, method, path)
            refused = r.status_code == 404 if rule == OWNER else refused_user(path, r)
            assert refused, _explain(who, route, r)
    if method in UNSAFE:
        who = "admin" if rule == ADMIN else "A"
        r = call(stage, who, method, path, csrf=False)
        assert r.status_code == 403, _explain(f"{who} without CSRF token", route, r)
    assert snapshot(stage.ctx) == before, f"{route}: a refused call changed the database"

    allowed = {USER: ["B", "admin", "A"], ADMIN: ["admin"], OWNER: ["A"]}[rule]
    for who in allowed:
        r = call(stage, who, method, path)
        assert reached(r), _explain(who, route, r)
