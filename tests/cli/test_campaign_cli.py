"""`sendas campaign send|status|pause|resume|cancel` as a script or a person uses them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from typer.testing import CliRunner

from sendas.cli import app
from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Campaign, Message
from sendas.outbox.completion import complete_if_done
from sendas.outbox.counts import recount

CSV = "email,first\nann@example.org,Ann\nnobody,No\nben@example.org,Ben\n"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SENDAS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SENDAS_DATABASE_URL", raising=False)
    monkeypatch.delenv("SENDAS_SECRET_KEY", raising=False)
    return tmp_path / "data"


@pytest.fixture
def run(data_dir: Path) -> Any:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), input=input)

    assert invoke("user", "add", "alice@example.com", "--name", "Alice").exit_code == 0
    r = invoke(
        "alias",
        "add",
        "--user",
        "alice@example.com",
        "--description",
        "Work",
        "--from",
        "alice@example.com",
        "--server",
        "mail.example.com:465",
        "--username",
        "alice",
        "--password-stdin",
        input="pw-123456\n",
    )
    assert r.exit_code == 0, r.output
    return invoke


@pytest.fixture
def ctx(data_dir: Path) -> Iterator[AppContext]:
    context = AppContext.build(Settings(data_dir=data_dir))
    yield context
    context.close()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "csv": tmp_path / "list.csv",
        "text": tmp_path / "letter.txt",
        "html": tmp_path / "letter.html",
    }
    paths["csv"].write_text(CSV)
    paths["text"].write_text("Dear {{ first }},\n")
    paths["html"].write_text("<p>Dear {{ first }}</p>")
    return paths


def send(run: Any, files: dict[str, Path], *extra: str) -> Any:
    return run(
        "campaign",
        "send",
        "--user",
        "alice@example.com",
        "--subject",
        "Hi {{ first }}",
        "--text-file",
        str(files["text"]),
        "--html-file",
        str(files["html"]),
        "--csv",
        str(files["csv"]),
        *extra,
    )


def statuses(ctx: AppContext) -> list[tuple[str, str]]:
    with ctx.db.read() as s:
        return [(m.to_addrs[0], m.status) for m in s.scalars(select(Message).order_by(Message.id))]


def test_bad_lines_refuse_the_list_by_number(run: Any, files: dict[str, Path], ctx: AppContext):
    r = send(run, files)
    assert r.exit_code == 2
    assert "line 3" in r.stderr and "nobody" in r.stderr
    assert statuses(ctx) == []


def test_skip_invalid_queues_the_rest(run: Any, files: dict[str, Path], ctx: AppContext):
    r = send(run, files, "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "queued campaign 1: 2 message(s), 1 line(s) skipped" in r.stdout
    assert "skipped line 3" in r.stderr
    assert statuses(ctx) == [("ann@example.org", "queued"), ("ben@example.org", "queued")]


def test_unknown_field_is_named(run: Any, files: dict[str, Path], ctx: AppContext):
    files["text"].write_text("Dear {{ title }} {{ first }}")
    r = send(run, files, "--skip-invalid")
    assert r.exit_code == 2
    assert "title" in r.stderr and "ann@example.org" in r.stderr
    assert statuses(ctx) == []


def test_status_json_pause_resume_cancel(run: Any, files: dict[str, Path], ctx: AppContext):
    assert send(run, files, "--skip-invalid").exit_code == 0
    r = run("campaign", "status", "1", "--json")
    assert r.exit_code == 0
    body = json.loads(r.stdout)
    assert body["status"] == "running" and body["total"] == 2 and body["counts"]["queued"] == 2
    r = run("campaign", "pause", "1")
    assert r.exit_code == 0 and "paused" in r.stdout
    assert json.loads(run("campaign", "status", "1", "--json").stdout)["status"] == "paused"
    assert "running" in run("campaign", "resume", "1").stdout
    r = run("campaign", "cancel", "1")
    assert r.exit_code == 0 and "cancelled 2" in r.stdout
    assert statuses(ctx) == [("ann@example.org", "cancelled"), ("ben@example.org", "cancelled")]
    r = run("campaign", "resume", "1")
    assert r.exit_code == 1 and "cancelled" in r.stderr
    r = run("campaign", "status", "99")
    assert r.exit_code == 1 and "not found" in r.stderr


def test_follow_shows_progress_until_completed(run: Any, files: dict[str, Path], ctx: AppContext):
    assert send(run, files, "--skip-invalid").exit_code == 0

    def deliver() -> None:  # plays the worker: one message, then the other
        for _ in range(2):
            time.sleep(0.3)
            with ctx.db.write() as s:
                first = s.scalars(select(Message).where(Message.status == "queued")).first()
                assert first is not None
                first.status, first.sent_at = "sent", datetime.now(UTC)
                recount(s, 1)  # the counts the outbox keeps
                # As the outbox does, in the transaction that records the outcome.
                complete_if_done(s, s.get_one(Campaign, 1))

    worker = threading.Thread(target=deliver)
    worker.start()
    r = run("campaign", "status", "1", "--follow", "--interval", "0.05")
    worker.join()
    assert r.exit_code == 0, r.output
    assert "campaign 1 completed" in r.stdout  # the progress line
    assert "campaign 1: completed, sent 2" in r.stdout
    assert json.loads(run("campaign", "status", "1", "--json").stdout)["completed_at"]


def test_needs_a_template(run: Any, files: dict[str, Path]):
    r = run(
        "campaign",
        "send",
        "--user",
        "alice@example.com",
        "--subject",
        "x",
        "--csv",
        str(files["csv"]),
    )
    assert r.exit_code == 2 and "--text-file" in r.stderr


def send_excel(run: Any, files: dict[str, Path], *extra: str) -> Any:
    subject = ("--subject", "Hi {{ first_name }}")
    return send(run, files, *extra, *subject)  # the last --subject wins


def test_excel_csv_with_a_chosen_column_and_the_caps(
    run: Any,
    files: dict[str, Path],
    ctx: AppContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files["csv"].write_bytes(
        "Nom;Work;First Name\r\nZoë;zoe@example.org;Zoë\r\nJosé;nobody;José\r\n".encode("cp1252")
    )
    files["text"].write_text("Dear {{ first_name }}")
    files["html"].write_text("<p>{{ nom }}</p>")
    r = send_excel(run, files)
    assert r.exit_code == 2
    assert "no column is named like an email address" in " ".join(r.stderr.split())
    monkeypatch.setenv("SENDAS_CSV_MAX_ROWS", "1")
    r = send_excel(run, files, "--email-column", "Work", "--skip-invalid")
    assert r.exit_code == 2
    assert "more than 1 recipients (the limit is SENDAS_CSV_MAX_ROWS)" in " ".join(r.stderr.split())
    assert statuses(ctx) == []
    monkeypatch.delenv("SENDAS_CSV_MAX_ROWS")
    r = send_excel(run, files, "--email-column", "Work", "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "skipped line 3: 'nobody' is not a valid email address" in " ".join(r.stderr.split())
    with ctx.db.read() as s:
        [message] = s.scalars(select(Message).options(selectinload(Message.body)))
    assert message.merge_fields == {"nom": "Zoë", "first_name": "Zoë"}
