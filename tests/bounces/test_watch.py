"""The watch as a task of the outbox worker: with IMAP IDLE a bounce filed while the worker
runs is handled in the round that is waiting (the next round is an hour away); without
IDLE, by polling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sendas.config import Settings
from sendas.context import AppContext
from sendas.services.common import Actor
from tests.bounces.conftest import api_message, sample, suppressed
from tests.conftest import Person
from tests.outbox.conftest import all_final, message, queue, running_worker, wait_for
from tests.servers.smtpd import SmtpdFactory


@pytest.fixture(params=["idle", "poll"])
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    idle = request.param == "idle"
    return Settings(
        data_dir=tmp_path / "data", embedded_worker=False, smtp_timeout=3.0,
        bounce_scan=True,
        # With IDLE, only the first round (waiting in IDLE) can see the bounce in time.
        bounce_poll_seconds=3600 if idle else 1,
        bounce_idle_seconds=600 if idle else 0,
    )  # fmt: skip


async def test_the_worker_watches_the_inbox_and_marks_a_bounce(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    [mid] = queue(ctx, alice_actor, box.alias_id, 1, to=["ann@example.org"])
    async with running_worker(ctx):
        await wait_for(all_final(ctx, [mid]))
        sent = message(ctx, mid)
        assert sent.status == "sent"
        box.deliver(sample("gmail_not_found.eml", sent))
        await wait_for(lambda: message(ctx, mid).status == "bounced", within=60)

    seen = api_message(client, alice.headers, mid)
    assert seen["status"] == "bounced" and "5.1.1" in seen["server_reply"]
    assert list(suppressed(ctx, alice.id)) == ["ann@example.org"]
    assert len(box.inbox()) == 1
