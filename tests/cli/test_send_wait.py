"""`sendas send --wait` reports the message's outcome, or gives up after --timeout."""

from __future__ import annotations

import asyncio
from typing import Any

from typer.testing import CliRunner

from sendas.cli import app
from sendas.context import AppContext
from sendas.services.common import Actor
from tests.outbox.conftest import make_alias, received_ids, running_worker
from tests.servers.smtpd import SmtpdFactory


def _send(ctx: AppContext, actor: Actor, alias_id: int, *extra: str) -> Any:
    env = {"SENDAS_DATA_DIR": str(ctx.settings.data_dir)}
    args = ["send", "--user", actor.email, "--alias", str(alias_id), "--to", "bob@example.org",
            "--subject", "Waited for", "--text", "Hi Bob", "--wait", *extra]  # fmt: skip
    return CliRunner().invoke(app, args, env=env)


async def test_wait_prints_the_servers_reply_once_sent(
    ctx: AppContext, alice: Any, smtpd: SmtpdFactory
) -> None:
    actor = Actor(alice.id, alice.email, False)
    server = await smtpd("none")
    alias_id = make_alias(ctx, actor, server)
    async with running_worker(ctx):
        result = await asyncio.to_thread(_send, ctx, actor, alias_id, "--timeout", "30")
    assert result.exit_code == 0, result.output
    queued, outcome = result.stdout.strip().splitlines()
    assert queued.startswith("queued message ")
    assert outcome.startswith("sent: 250")
    assert len(received_ids(server.recorder)) == 1


def test_wait_gives_up_after_the_timeout(ctx: AppContext, alice: Any) -> None:
    class _NoServer:
        port = 2525

    actor = Actor(alice.id, alice.email, False)
    alias_id = make_alias(ctx, actor, _NoServer())  # type: ignore[arg-type]
    result = _send(ctx, actor, alias_id, "--timeout", "0")
    assert result.exit_code == 1
    assert "is still queued after 0 s" in result.stderr
