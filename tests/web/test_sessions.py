"""Sessions that can be ended, and a log-in that neither locks the real user out nor holds
the database while argon2 runs (issue 11, items 5 and 6)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from sendas.api import create_app
from sendas.context import AppContext
from sendas.db.models import WebSession
from sendas.services import users as user_service
from sendas.web.security import LoginThrottle, trusted_networks
from tests.conftest import Person
from tests.web.test_pages import csrf_of

PASSWORD = "correct horse battery"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def browser(ctx: AppContext, client: tuple[str, int] = ("198.51.100.7", 40000)) -> TestClient:
    return TestClient(create_app(ctx.settings, ctx=ctx), follow_redirects=False, client=client)


def log_in(web: TestClient, email: str, password: str = PASSWORD) -> Any:
    token = csrf_of(web.get("/login").text)
    return web.post("/login", data={"csrf": token, "email": email, "password": password})


@pytest.fixture
def web(ctx: AppContext, admin: Person) -> Iterator[TestClient]:
    with browser(ctx) as c:
        yield c


def signed_in(web: TestClient, email: str) -> tuple[dict[str, str], str]:
    """Log in; return a copy of the cookie jar (what an attacker would replay) and the
    page's CSRF token."""
    assert log_in(web, email).status_code == 303
    page = web.get("/aliases")
    assert page.status_code == 200
    return dict(web.cookies), csrf_of(page.text)


def replay_works(ctx: AppContext, cookies: dict[str, str], csrf: str) -> dict[str, int]:
    """What a stolen cookie still reaches: a page, the API, a CSRF-protected POST."""
    with browser(ctx, ("203.0.113.9", 1)) as other:
        other.cookies.update(cookies)
        return {
            "page": other.get("/aliases").status_code,
            "api": other.get("/api/me").status_code,
            "post": other.post(
                "/api/tokens", json={"name": "stolen"}, headers={"X-CSRF-Token": csrf}
            ).status_code,
        }


DEAD = {"page": 303, "api": 401, "post": 401}


def test_a_cookie_replayed_after_logout_is_refused(
    ctx: AppContext, web: TestClient, alice: Person
) -> None:
    cookies, csrf = signed_in(web, alice.email)
    assert replay_works(ctx, cookies, csrf) == {"page": 200, "api": 200, "post": 201}

    assert web.post("/logout", data={"csrf": csrf}).status_code == 303
    assert replay_works(ctx, cookies, csrf) == DEAD
    with browser(ctx) as other:
        other.cookies.update(cookies)
        assert other.get("/aliases").headers["location"] == "/login?next=/aliases"
        assert other.post("/logout", data={"csrf": csrf}).status_code == 303  # harmless


def test_a_password_change_ends_the_other_sessions_only(
    ctx: AppContext, web: TestClient, alice: Person
) -> None:
    stolen, stolen_csrf = signed_in(web, alice.email)
    with browser(ctx, ("192.0.2.1", 2)) as mine:
        _, csrf = signed_in(mine, alice.email)
        r = mine.post(
            "/api/me/password",
            json={"current_password": PASSWORD, "new_password": "a brand new secret"},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status_code == 204, r.text
        assert mine.get("/aliases").status_code == 200  # the session that changed it stays
    assert replay_works(ctx, stolen, stolen_csrf) == DEAD
    # Tokens stay (documented): they are revoked one by one on the account page.
    with browser(ctx) as c:
        assert c.get("/api/me", headers=alice.headers).status_code == 200
        assert log_in(c, alice.email).status_code == 401
        assert log_in(c, alice.email, "a brand new secret").status_code == 303


def test_a_wrong_current_password_changes_nothing(
    ctx: AppContext, web: TestClient, alice: Person
) -> None:
    r = web.post(
        "/api/me/password",
        json={"current_password": "not it", "new_password": "a brand new secret"},
        headers=alice.headers,
    )
    assert r.status_code == 422
    assert [e["loc"][-1] for e in r.json()["detail"]] == ["current_password"]
    assert log_in(web, alice.email).status_code == 303


def test_disabling_a_user_ends_sessions_and_tokens_at_once(
    ctx: AppContext, web: TestClient, admin: Person, alice: Person
) -> None:
    cookies, csrf = signed_in(web, alice.email)
    r = web.patch(f"/api/users/{alice.id}", json={"disabled": True}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert replay_works(ctx, cookies, csrf) == DEAD
    assert web.get("/api/me", headers=alice.headers).status_code == 401
    with browser(ctx) as c:
        r = log_in(c, alice.email)
        assert r.status_code == 401 and "disabled" in r.text
    with ctx.db.read() as s:
        assert s.query(WebSession).filter_by(user_id=alice.id).count() == 0

    r = web.patch(f"/api/users/{alice.id}", json={"disabled": False}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert web.get("/api/me", headers=alice.headers).status_code == 200
    assert replay_works(ctx, cookies, csrf) == DEAD  # ended sessions stay ended


def test_an_admin_reset_ends_the_users_sessions(
    ctx: AppContext, web: TestClient, admin: Person, alice: Person
) -> None:
    cookies, csrf = signed_in(web, alice.email)
    r = web.patch(
        f"/api/users/{alice.id}", json={"password": "reset by admin"}, headers=admin.headers
    )
    assert r.status_code == 200
    assert replay_works(ctx, cookies, csrf) == DEAD
    with browser(ctx) as c:
        assert log_in(c, alice.email, "reset by admin").status_code == 303


def test_sessions_per_user_are_bounded(ctx: AppContext, alice: Person, admin: Person) -> None:
    keep = ctx.settings.sessions_per_user
    for _ in range(keep + 3):
        with browser(ctx) as c:
            assert log_in(c, alice.email).status_code == 303
    with ctx.db.read() as s:
        assert s.query(WebSession).filter_by(user_id=alice.id).count() == keep


# --- log-in throttle ----------------------------------------------------------------------


def test_wrong_passwords_from_one_client_do_not_block_another(
    ctx: AppContext, admin: Person, alice: Person
) -> None:
    with browser(ctx, ("203.0.113.66", 1)) as attacker, browser(ctx, ("198.51.100.7", 2)) as me:
        throttle: LoginThrottle = attacker.app.state.login_throttle  # type: ignore[attr-defined]
        me.app.state.login_throttle = throttle  # type: ignore[attr-defined]  # one process
        throttle.clock = FakeClock()
        codes = [log_in(attacker, alice.email, "guess").status_code for _ in range(8)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
        # Even the right password waits from the attacker's client ...
        assert log_in(attacker, alice.email).status_code == 429
        # ... while alice, elsewhere, logs in at once.
        assert log_in(me, alice.email).status_code == 303


def test_the_delay_grows_and_ends() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    waits = []
    for _ in range(9):
        throttle.failed("c", "a@example.com")
        waits.append(throttle.retry_after("c", "a@example.com"))
    assert waits[:4] == [0, 0, 0, 0] and waits[4:] == [2, 4, 8, 16, 32]
    clock.now += 32
    assert throttle.retry_after("c", "a@example.com") == 0
    assert throttle.retry_after("c", "b@example.com") == 0  # other accounts: not this pair
    throttle.succeeded("c", "a@example.com")
    throttle.failed("c", "a@example.com")
    assert throttle.retry_after("c", "a@example.com") == 0


def test_one_client_trying_many_accounts_is_capped() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock, per_client=30, window=900)
    for i in range(30):
        assert throttle.retry_after("c", f"u{i}@example.com") == 0
        throttle.failed("c", f"u{i}@example.com")
    assert throttle.retry_after("c", "new@example.com") == 900
    assert throttle.retry_after("elsewhere", "new@example.com") == 0
    clock.now += 900
    assert throttle.retry_after("c", "new@example.com") == 0


def test_the_throttle_keeps_a_bounded_number_of_entries() -> None:
    throttle = LoginThrottle(clock=FakeClock(), max_entries=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 250}.{i % 250}", "a@example.com")
    assert len(throttle._pairs) == 100 and len(throttle._clients) == 100


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8"])
def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
    ctx: AppContext, admin: Person, alice: Person, trusted: str
) -> None:
    ctx.settings.trusted_proxies = trusted
    with browser(ctx, ("203.0.113.66", 1)) as attacker:
        throttle: LoginThrottle = attacker.app.state.login_throttle  # type: ignore[attr-defined]
        throttle.clock = FakeClock()
        token = csrf_of(attacker.get("/login").text)
        codes = []
        for i in range(8):
            r = attacker.post(
                "/login",
                data={"csrf": token, "email": alice.email, "password": "guess"},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            )
            codes.append(r.status_code)
        assert codes[5:] == [429] * 3
        assert set(throttle._clients) == {"203.0.113.66"}


def test_a_trusted_proxy_passes_the_client_address(
    ctx: AppContext, admin: Person, alice: Person
) -> None:
    ctx.settings.trusted_proxies = "10.0.0.0/8, ::1"
    with browser(ctx, ("10.1.2.3", 1)) as proxy:
        throttle: LoginThrottle = proxy.app.state.login_throttle  # type: ignore[attr-defined]
        throttle.clock = FakeClock()
        token = csrf_of(proxy.get("/login").text)
        for client in ("192.0.2.1", "192.0.2.1", "198.51.100.2"):
            proxy.post(
                "/login",
                data={"csrf": token, "email": alice.email, "password": "guess"},
                # The left entry is the client's own claim; the proxy appended the real one.
                headers={"X-Forwarded-For": f"6.6.6.6, {client}, 10.9.9.9"},
            )
        assert set(throttle._clients) == {"192.0.2.1", "198.51.100.2"}


def test_trusted_proxies_setting_is_checked() -> None:
    assert [str(n) for n in trusted_networks(" 10.0.0.0/8 ,::1,")] == ["10.0.0.0/8", "::1/128"]
    from sendas.errors import ConfigError

    with pytest.raises(ConfigError, match="SENDAS_TRUSTED_PROXIES"):
        trusted_networks("10.0.0.0/8,proxy.example")


# --- argon2 outside any write transaction -------------------------------------------------


def test_argon2_runs_with_no_write_transaction_open(
    ctx: AppContext, web: TestClient, alice: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the password is checked, no connection of the engine is inside a transaction
    that writes (SQLite: BEGIN IMMEDIATE; any: an INSERT/UPDATE/DELETE not yet committed)."""
    open_writes: set[int] = set()

    def on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE":
            open_writes.add(id(conn.connection.dbapi_connection))

    def on_statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            open_writes.add(id(conn.connection.dbapi_connection))

    def on_end(conn: Any) -> None:
        open_writes.discard(id(conn.connection.dbapi_connection))

    engine = ctx.db.engine
    listeners: list[tuple[str, Callable[..., Any]]] = [
        ("begin", on_begin),
        ("before_cursor_execute", on_statement),
        ("commit", on_end),
        ("rollback", on_end),
    ]
    for name, fn in listeners:
        event.listen(engine, name, fn)
    seen: list[set[int]] = []
    real = user_service.password_matches

    def spy(password_hash: str | None, password: str) -> bool:
        seen.append(set(open_writes))
        return real(password_hash, password)

    monkeypatch.setattr(user_service, "password_matches", spy)
    try:
        assert log_in(web, alice.email, "wrong").status_code == 401
        assert log_in(web, alice.email).status_code == 303
        assert log_in(web, "nobody@example.com", "x").status_code == 401
    finally:
        for name, fn in listeners:
            event.remove(engine, name, fn)
    assert len(seen) == 3
    assert seen == [set(), set(), set()]


def test_guessing_the_current_password_is_throttled_like_a_log_in(
    ctx: AppContext, web: TestClient, alice: Person
) -> None:
    web.app.state.login_throttle.clock = FakeClock()  # type: ignore[attr-defined]
    wrong = {"current_password": "guess", "new_password": "a brand new secret"}
    codes = [
        web.post("/api/me/password", json=wrong, headers=alice.headers).status_code
        for _ in range(6)
    ]
    assert codes == [422] * 5 + [429]
    right = {**wrong, "current_password": PASSWORD}
    r = web.post("/api/me/password", json=right, headers=alice.headers)
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
