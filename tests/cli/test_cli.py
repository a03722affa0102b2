"""The CLI as scripts use it: exit codes, stdout shapes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sendas.cli import app


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SENDAS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SENDAS_DATABASE_URL", raising=False)
    monkeypatch.delenv("SENDAS_SECRET_KEY", raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    return invoke


def test_user_add_generates_password_and_lists(run):
    r = run("user", "add", "Ann@Example.com", "--name", "Ann", "--admin")
    assert r.exit_code == 0, r.output
    assert "password:" in r.stdout
    r = run("user", "list", "--json")
    users = json.loads(r.stdout)
    assert users[0]["email"] == "ann@example.com" and users[0]["role"] == "admin"


def test_user_add_password_stdin_and_token_alone_on_stdout(run):
    r = run(
        "user",
        "add",
        "bo@example.com",
        "--name",
        "Bo",
        "--password-stdin",
        input="a-long-password\n",
    )
    assert r.exit_code == 0 and "password:" not in r.stdout
    r = run("token", "create", "--user", "bo@example.com")
    assert r.exit_code == 0
    assert r.stdout.count("\n") == 1 and r.stdout.startswith("sas_")


def test_bad_input_is_one_line_and_nonzero(run):
    r = run("user", "add", "not-an-email", "--name", "X")
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("error: email") and r.stderr.strip().count("\n") == 0
    r = run("token", "create", "--user", "nobody@example.com")
    assert r.exit_code == 1 and "not found" in r.stderr


def test_alias_lifecycle(run):
    run("user", "add", "al@example.com", "--name", "Al")
    r = run(
        "alias",
        "add",
        "--user",
        "al@example.com",
        "--description",
        "Work",
        "--name",
        "Al",
        "--from",
        "al@example.com",
        "--server",
        "imap.gmail.com:465",
        "--username",
        "al@example.com",
        "--password-stdin",
        "--delay-ms",
        "2500",
        input="abcd efgh ijkl mnop\n",
    )
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "imap." in r.stderr
    r = run(
        "alias",
        "add",
        "--user",
        "al@example.com",
        "--description",
        "Other",
        "--from",
        "al2@example.com",
        "--server",
        "smtp.example.com",
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(run("alias", "list", "--user", "al@example.com", "--json").stdout)
    assert [(a["description"], a["is_default"], a["password_set"]) for a in rows] == [
        ("Work", True, True),
        ("Other", False, False),
    ]
    assert (
        "abcdefghijklmnop" not in run("alias", "list", "--user", "al@example.com", "--json").stdout
    )
    assert run("alias", "default", "--user", "al@example.com", str(rows[1]["id"])).exit_code == 0
    r = run("alias", "edit", "--user", "al@example.com", str(rows[0]["id"]), "--delay-ms", "-3")
    assert r.exit_code == 2 and "delay_ms" in r.stderr
    assert run("alias", "delete", "--user", "al@example.com", str(rows[1]["id"])).exit_code == 0
    rows = json.loads(run("alias", "list", "--user", "al@example.com", "--json").stdout)
    assert [(a["description"], a["is_default"]) for a in rows] == [("Work", True)]


def test_alias_max_connections(run):
    run("user", "add", "mc@example.com", "--name", "MC")
    base = ["alias", "add", "--user", "mc@example.com", "--server", "relay.example.com:25"]
    r = run(*base, "--description", "Relay", "--from", "mc@example.com",
            "--max-connections", "5")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run(*base, "--description", "Paced", "--from", "mc2@example.com", "--delay-ms", "500",
            "--max-connections", "2")  # fmt: skip
    assert r.exit_code == 2 and "max_connections" in r.stderr
    rows = json.loads(run("alias", "list", "--user", "mc@example.com", "--json").stdout)
    assert [(a["description"], a["max_connections"]) for a in rows] == [("Relay", 5)]
    r = run("alias", "edit", "--user", "mc@example.com", str(rows[0]["id"]),
            "--max-connections", "1")  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = json.loads(run("alias", "list", "--user", "mc@example.com", "--json").stdout)
    assert rows[0]["max_connections"] == 1


def test_alias_duplicate_description_is_refused(run):
    run("user", "add", "d@example.com", "--name", "D")
    args = [
        "alias",
        "add",
        "--user",
        "d@example.com",
        "--description",
        "Work",
        "--from",
        "d@example.com",
        "--server",
        "smtp.example.com:587",
    ]
    assert run(*args).exit_code == 0
    r = run(*[a if a != "Work" else "WORK" for a in args])
    assert r.exit_code == 2 and "description" in r.stderr


def test_imap_and_system_outgoing(run):
    run("user", "add", "i@example.com", "--name", "I")
    r = run(
        "imap",
        "add",
        "--user",
        "i@example.com",
        "--server",
        "imap.example.com",
        "--username",
        "i",
        "--password-stdin",
        input="imap-secret-1\n",
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(run("imap", "list", "--user", "i@example.com", "--json").stdout)
    assert rows[0]["imap_server"] == "imap.example.com:993" and rows[0]["password_set"]
    r = run(
        "system",
        "outgoing",
        "set",
        "--from",
        "noreply@example.com",
        "--server",
        "smtp.example.com:587",
        "--password-stdin",
        input="sys-secret-1\n",
    )
    assert r.exit_code == 0, r.output
    shown = json.loads(run("system", "outgoing", "show", "--json").stdout)
    assert shown["configured"] and shown["password_set"] and "sys-secret-1" not in json.dumps(shown)


def test_rotate_key_and_db_upgrade(run, tmp_path: Path):
    run("user", "add", "r@example.com", "--name", "R")
    run(
        "imap",
        "add",
        "--user",
        "r@example.com",
        "--server",
        "imap.example.com",
        "--username",
        "r",
        "--password-stdin",
        input="imap-secret-1\n",
    )
    before = (tmp_path / "data" / "secret.key").read_text()
    r = run("rotate-key")
    assert r.exit_code == 0 and "1 secret" in r.stdout
    assert (tmp_path / "data" / "secret.key").read_text() != before
    r = run("db", "upgrade")
    assert r.exit_code == 0 and "revision" in r.stdout


def test_alias_test_reports_ok_and_failure(run):
    from aiosmtpd.controller import Controller

    from tests.servers.process import free_port

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # pragma: no cover - never sent
            return "250 OK"

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        run("user", "add", "t@example.com", "--name", "T")
        r = run(
            "alias",
            "add",
            "--user",
            "t@example.com",
            "--description",
            "Plain",
            "--from",
            "t@example.com",
            "--server",
            f"127.0.0.1:{port}",
            "--tls",
            "none",
        )
        assert r.exit_code == 0, r.output
        r = run("alias", "test", "--user", "t@example.com", "1")
        assert r.exit_code == 0, r.output
        assert "Status: OK" in r.stdout and "rcpt_to" in r.stdout
    finally:
        controller.stop()
    closed = free_port()  # nobody listens there
    run("alias", "edit", "--user", "t@example.com", "1", "--server", f"127.0.0.1:{closed}")
    r = run("alias", "test", "--user", "t@example.com", "1")
    assert r.exit_code == 1
    assert "Status: FAILED at connect" in r.stdout and "What to do:" in r.stdout


def test_imap_and_alias_test_pass_with_every_step_ok(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dovecot_server
):
    from aiosmtpd.controller import Controller

    from tests.servers.process import free_port

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # pragma: no cover - never sent
            return "250 OK"

    ca_file = tmp_path / "dovecot-ca.pem"
    ca_file.write_text(dovecot_server.ca_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # trust the test CA, as an operator would
    account = dovecot_server.special
    run("user", "add", "m@example.com", "--name", "M")
    r = run(
        "imap",
        "add",
        "--user",
        "m@example.com",
        "--server",
        f"{dovecot_server.host}:{dovecot_server.imaps_port}",
        "--username",
        account.username,
        "--tls",
        "implicit",
        "--password-stdin",
        input=account.password + "\n",
    )
    assert r.exit_code == 0, r.output
    r = run("imap", "test", "--user", "m@example.com", "1")
    assert r.exit_code == 0, r.output
    assert "FAIL" not in r.stdout and "Status: OK (Sent folder: Sent Items)" in r.stdout
    lines = r.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:4]] == [
        ["ok", "connect"],
        ["ok", "tls"],
        ["ok", "login"],
        ["ok", "find_sent"],
    ]
    assert "Sent folder: Sent Items" in lines[3]

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        r = run(
            "alias",
            "add",
            "--user",
            "m@example.com",
            "--description",
            "With copy",
            "--from",
            "m@example.com",
            "--server",
            f"127.0.0.1:{port}",
            "--tls",
            "none",
            "--imap-account",
            "1",
        )
        assert r.exit_code == 0, r.output
        r = run("alias", "test", "--user", "m@example.com", "1")
        assert r.exit_code == 0, r.output
        assert "FAIL" not in r.stdout and "Status: OK (Sent folder: Sent Items)" in r.stdout
        steps = [line.split()[:2] for line in r.stdout.splitlines() if line.startswith("  ")]
        assert ["ok", "rcpt_to"] in steps and ["ok", "imap_find_sent"] in steps
        assert all(mark == "ok" for mark, _ in steps)
        r = run("alias", "test", "--user", "m@example.com", "1", "--json")
        assert r.exit_code == 0, r.output
        result = json.loads(r.stdout)
        assert result["status"] == "OK" and result["sent_folder"] == "Sent Items"
        assert all(step["ok"] is True for step in result["steps"])
        assert result["steps"][-1]["name"] == "imap_find_sent"
    finally:
        controller.stop()


def test_oauth_configure_and_show(run):
    r = run(
        "oauth", "configure", "microsoft", "--client-id", "app-123", "--tenant", "contoso.com",
        "--discovery-url", "https://login.example.test/{tenant}/v2.0/.well-known/openid-configuration",
        "--client-secret-stdin", input="cli-secret-value\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "redirect URI to register: http://127.0.0.1:8025/oauth/microsoft/callback" in r.output
    shown = run("oauth", "show", "--json")
    assert shown.exit_code == 0 and "cli-secret-value" not in shown.output
    by_name = {c["provider"]: c for c in json.loads(shown.stdout)}
    assert by_name["microsoft"]["client_id"] == "app-123"
    assert (
        by_name["microsoft"]["client_secret_set"]
        and by_name["microsoft"]["tenant"] == "contoso.com"
    )
    assert not by_name["google"]["configured"]
    # Without a secret the first registration is refused; bad input is exit code 2.
    r = run("oauth", "configure", "google", "--client-id", "g-1")
    assert r.exit_code == 2 and "client_secret" in r.output
    r = run("oauth", "configure", "google", "--client-id", "g-1", "--tenant", "x",
            "--client-secret-stdin", input="s\n")  # fmt: skip
    assert r.exit_code == 2 and "tenant" in r.output
    text = run("oauth", "show")
    assert (
        text.exit_code == 0 and "[google]" in text.output and "cli-secret-value" not in text.output
    )


def test_alias_edit_of_the_server_asks_for_the_password_again(run):
    run("user", "add", "p@example.com", "--name", "P")
    add = ("alias", "add", "--user", "p@example.com", "--description", "Work", "--from",
           "p@example.com", "--server", "mail.example.test:587", "--username", "p",
           "--password-stdin")  # fmt: skip
    assert run(*add, input="stored password\n").exit_code == 0
    edit = ("alias", "edit", "--user", "p@example.com", "1", "--server", "mail.other.test:587")
    r = run(*edit)
    assert r.exit_code == 2
    assert "smtp_password: the server changed: enter the password again" in r.stderr
    assert "--password-stdin" in r.stderr and "stored password" not in r.output
    listed = run("alias", "list", "--user", "p@example.com", "--json")
    assert json.loads(listed.stdout)[0]["smtp_server"] == "mail.example.test:587"
    r = run(*edit, "--password-stdin", input="new password\n")
    assert r.exit_code == 0, r.output
