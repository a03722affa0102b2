"""`sendas user passwd|reset-password|disable|enable|role` and `sendas token list|revoke|
create --expires`, as scripts use them; and `sendas serve`'s proxy options."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sendas.cli import app
from sendas.cli.serve import proxy_options
from sendas.config import Settings
from sendas.errors import ConfigError
from sendas.services import users as user_service

Run = Callable[..., Any]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("SENDAS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SENDAS_DATABASE_URL", raising=False)
    monkeypatch.delenv("SENDAS_SECRET_KEY", raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), input=input)

    return invoke


def login_ok(email: str, password: str) -> bool:
    from sendas.context import AppContext

    ctx = AppContext.build(Settings())
    try:
        user_service.verify_login(ctx.db, email, password)
        return True
    except Exception:
        return False
    finally:
        ctx.close()


def test_tokens_created_listed_and_revoked(run: Run) -> None:
    run("user", "add", "ann@example.com", "--name", "Ann", "--password-stdin", input="pw-long-1\n")
    r = run("token", "create", "--user", "ann@example.com", "--name", "ci", "--expires", "30d")
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    r = run("token", "list", "--user", "ann@example.com", "--json")
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)
    assert [t["name"] for t in listed] == ["ci"] and listed[0]["expires_at"] != "-"
    assert token not in r.stdout
    r = run("token", "revoke", str(listed[0]["id"]))
    assert r.exit_code == 0 and "revoked" in r.stdout
    assert json.loads(run("token", "list", "--user", "ann@example.com", "--json").stdout) == []
    r = run("token", "revoke", str(listed[0]["id"]))
    assert r.exit_code == 1 and "not found" in r.stderr


@pytest.mark.parametrize("bad", ["tomorrow", "2001-01-01T00:00:00Z", "2099-01-01T00:00"])
def test_token_expiry_is_checked(run: Run, bad: str) -> None:
    run("user", "add", "ann@example.com", "--name", "Ann")
    r = run("token", "create", "--user", "ann@example.com", "--expires", bad)
    assert r.exit_code == 2 and r.stderr.startswith("error: expires")


def test_passwd_reset_disable_enable_role(run: Run) -> None:
    run("user", "add", "root@example.com", "--name", "Root", "--admin")
    run("user", "add", "bo@example.com", "--name", "Bo", "--password-stdin", input="first-pass\n")
    r = run("user", "passwd", "bo@example.com", "--password-stdin", input="second-pass\n")
    assert r.exit_code == 0, r.output
    assert login_ok("bo@example.com", "second-pass")
    assert not login_ok("bo@example.com", "first-pass")

    r = run("user", "reset-password", "bo@example.com")
    assert r.exit_code == 0
    generated = r.stdout.split("password: ")[1].strip()
    assert login_ok("bo@example.com", generated)

    assert run("user", "disable", "bo@example.com").exit_code == 0
    assert json.loads(run("user", "list", "--json").stdout)[1]["disabled"] is True
    assert not login_ok("bo@example.com", generated)
    assert run("user", "enable", "bo@example.com").exit_code == 0
    assert login_ok("bo@example.com", generated)

    assert run("user", "role", "bo@example.com", "admin").exit_code == 0
    assert run("user", "role", "root@example.com", "user").exit_code == 0
    r = run("user", "disable", "bo@example.com")  # now the last active admin
    assert r.exit_code == 2 and "last active admin" in r.stderr
    r = run("user", "role", "bo@example.com", "owner")
    assert r.exit_code == 2 and r.stderr.startswith("error: role")


def test_serve_trusts_proxy_headers_only_from_the_setting() -> None:
    assert proxy_options(Settings()) == {"proxy_headers": False}
    opts = proxy_options(Settings(trusted_proxies="10.0.0.0/8,::1"))
    assert opts == {"proxy_headers": True, "forwarded_allow_ips": ["10.0.0.0/8", "::1/128"]}
    with pytest.raises(ConfigError):
        proxy_options(Settings(trusted_proxies="everyone"))
