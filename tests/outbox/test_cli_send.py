"""`sendas send` queues through the outbox and prints the message id."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sendas.cli import app
from sendas.context import AppContext
from sendas.db.models import Message
from sendas.services.common import Actor
from tests.outbox.conftest import make_alias


class _FakeServer:
    port = 2525


def test_send_queues_a_message(ctx: AppContext, alice_actor: Actor, tmp_path: Path) -> None:
    alias_id = make_alias(ctx, alice_actor, _FakeServer())  # type: ignore[arg-type]
    body = tmp_path / "body.txt"
    body.write_text("Hello from the CLI\n")
    attachment = tmp_path / "notes.txt"
    attachment.write_text("n")
    env = {"SENDAS_DATA_DIR": str(ctx.settings.data_dir)}
    result = CliRunner().invoke(app, [
        "send", "--user", alice_actor.email, "--alias", str(alias_id), "--to", "bob@example.org",
        "--to", "carol@example.org", "--subject", "From the CLI", "--text-file", str(body),
        "--attach", str(attachment)], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    message_id = int(result.output.split()[-1])
    with ctx.db.read() as s:
        m = s.get_one(Message, message_id)
        assert m.status == "queued" and m.recipients == ["bob@example.org", "carol@example.org"]
        assert m.raw is not None and b"notes.txt" in m.raw

    bad = CliRunner().invoke(app, ["send", "--user", alice_actor.email, "--to", "x@example.org",
                                   "--subject", "s"], env=env)  # fmt: skip
    assert bad.exit_code == 2
