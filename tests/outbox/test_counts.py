"""The per-letter counts the outbox keeps equal a full count of the messages by status, read
in the same snapshot: during and after a send with retries, failures and dropped
connections; after send again and mark as sent; pause, resume and cancel; a ``sendas worker``
killed mid-submission and the reaping after it; and two workers on PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sendas.context import AppContext
from sendas.db.models import Campaign, Message
from sendas.outbox.counts import full_counts, read_counts
from sendas.services import messages as message_service
from sendas.services.campaigns.lifecycle import cancel_campaign, pause_campaign, resume_campaign
from sendas.services.common import Actor
from tests.conftest import make_actor
from tests.outbox.conftest import (
    SpawnWorker,
    make_alias,
    message_id_of,
    running_worker,
    wait_for,
    worker_started,
)
from tests.outbox.test_crash import form_letter
from tests.servers.smtpd import DROP, Received, SmtpdFactory

OPTIONS = ("--lease-seconds", "1", "--poll-interval", "0.05")


def kept_and_full(ctx: AppContext, campaign_id: int) -> tuple[dict[str, int], dict[str, int]]:
    """The kept counts (zeros left out) and a full count, in one read transaction."""
    with ctx.db.read() as s:
        kept = {k: n for k, n in read_counts(s, [campaign_id])[campaign_id].items() if n}
        return kept, full_counts(s, campaign_id)


def assert_counts_agree(ctx: AppContext, campaign_id: int) -> dict[str, int]:
    kept, full = kept_and_full(ctx, campaign_id)
    assert kept == full
    return full


def letter_done(ctx: AppContext, campaign_id: int) -> Callable[[], bool]:
    def check() -> bool:
        with ctx.db.read() as s:
            status = s.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        return status in ("completed", "cancelled")

    return check


async def test_counts_follow_retries_failures_unknowns_and_settling_by_hand(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    tried: dict[str, int] = {}

    def end(received: Received) -> str | None:
        to = received.rcpt_tos[0]
        number = int(to[1 : to.index("@")])
        tried[to] = tried.get(to, 0) + 1
        if number % 7 == 1 and tried[to] == 1:
            return "451 4.3.0 Temporary local problem"
        if number % 7 == 2:
            return "550 5.1.1 no such user"
        if number % 7 == 3 and tried[to] == 1:
            return DROP  # the server may have accepted it: unknown
        return None

    server.recorder.script["DATA_END"] = end
    alias_id = make_alias(ctx, alice_actor, server)
    campaign_id = form_letter(ctx, alice_actor, alias_id, 70)
    assert assert_counts_agree(ctx, campaign_id) == {"queued": 70}
    async with running_worker(ctx):
        deadline = time.monotonic() + 90
        while not await asyncio.to_thread(letter_done(ctx, campaign_id)):
            await asyncio.to_thread(assert_counts_agree, ctx, campaign_id)  # while sending
            assert time.monotonic() < deadline, kept_and_full(ctx, campaign_id)
            await asyncio.sleep(0.02)
    full = assert_counts_agree(ctx, campaign_id)
    assert full["failed"] == 10 and full["unknown"] >= 1 and full["sent"] >= 40
    assert sum(full.values()) == 70

    # The owner settles the unknown ones: half sent again, half marked as sent.
    with ctx.db.read() as s:
        unknown = list(s.scalars(select(Message.id).where(
            Message.campaign_id == campaign_id, Message.status == "unknown")))  # fmt: skip
    again, marked = unknown[::2], unknown[1::2]
    with ctx.db.write() as s:
        for mid in again:
            message_service.resend(s, alice_actor, mid)
        for mid in marked:
            message_service.mark_sent(s, alice_actor, mid)
    full = assert_counts_agree(ctx, campaign_id)
    assert full.get("queued", 0) == len(again) and full.get("unknown", 0) == 0
    async with running_worker(ctx):
        await wait_for(letter_done(ctx, campaign_id))
    full = assert_counts_agree(ctx, campaign_id)
    assert full["sent"] == 60 and full["failed"] == 10


async def test_counts_follow_pause_resume_and_cancel(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, alice_actor, server, delay_ms=20)
    campaign_id = form_letter(ctx, alice_actor, alias_id, 200)

    def sent_at_least(n: int) -> Callable[[], bool]:
        return lambda: len(server.recorder.messages) >= n

    async with running_worker(ctx):
        await wait_for(sent_at_least(10))
        with ctx.db.write() as s:
            pause_campaign(s, alice_actor, campaign_id)
        assert_counts_agree(ctx, campaign_id)
        await asyncio.sleep(0.3)  # what was in flight settles
        paused = assert_counts_agree(ctx, campaign_id)
        with ctx.db.write() as s:
            resume_campaign(s, alice_actor, campaign_id)
        await wait_for(sent_at_least(paused.get("sent", 0) + 10))
        with ctx.db.write() as s:
            cancel_campaign(s, alice_actor, campaign_id)
        assert_counts_agree(ctx, campaign_id)
        await asyncio.sleep(0.3)
    full = assert_counts_agree(ctx, campaign_id)
    assert full["cancelled"] > 0 and full["sent"] >= 20
    assert set(full) <= {"sent", "cancelled"} and sum(full.values()) == 200


@pytest.mark.timeout(120)
async def test_counts_survive_sigkilled_workers_and_reaping(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = shared_sqlite
    actor = make_actor(ctx, "counts@example.com")
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, actor, server)
    campaign_id = form_letter(ctx, actor, alias_id, 600)
    for kill in range(3):
        before = len(server.recorder.messages)
        proc = await sendas_worker(env, *OPTIONS)
        deadline = time.monotonic() + 60
        while len(server.recorder.messages) < before + 40 + 20 * kill:
            assert time.monotonic() < deadline, "the worker sent nothing"
            await asyncio.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert_counts_agree(ctx, campaign_id)  # what the dead worker left, "sending" included
    log = tmp_path / "last-worker.log"
    with log.open("wb") as err:
        proc = await sendas_worker({**env, "SENDAS_LOG_LEVEL": "INFO"}, *OPTIONS, stderr=err)
    await worker_started(log)
    await wait_for(letter_done(ctx, campaign_id), within=60)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    full = assert_counts_agree(ctx, campaign_id)
    assert set(full) <= {"sent", "unknown"} and sum(full.values()) == 600
    assert full.get("unknown", 0) >= 1  # the kills were mid-submission: reaped to unknown
    received = {message_id_of(m.data) for m in server.recorder.messages}
    assert len(received) >= full["sent"]


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_counts_hold_with_two_workers_on_postgresql(
    pg_shared: tuple[AppContext, dict[str, str]], smtpd: SmtpdFactory, sendas_worker: SpawnWorker
) -> None:
    ctx, env = pg_shared
    env = {**env, "SENDAS_LOG_LEVEL": "WARNING"}
    actor = make_actor(ctx, "pg-counts@example.com")
    server = await smtpd("none", pipelining=True)
    letters = [
        form_letter(ctx, actor, make_alias(ctx, actor, server, name=f"A{i}"), 400) for i in range(4)
    ]
    options = (*OPTIONS, "--lane-hold-seconds", "0.3")
    first = await sendas_worker(env, *options)
    await sendas_worker(env, *options)
    deadline = time.monotonic() + 60
    while len(server.recorder.messages) < 300:
        assert time.monotonic() < deadline, "the workers sent nothing"
        await asyncio.sleep(0.01)
    first.send_signal(signal.SIGKILL)  # its lanes go to the other worker
    await first.wait()
    for campaign_id in letters:
        await wait_for(letter_done(ctx, campaign_id), within=60)
    for campaign_id in letters:
        full = assert_counts_agree(ctx, campaign_id)
        assert set(full) <= {"sent", "unknown"} and sum(full.values()) == 400
    with ctx.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 1600


def test_only_the_outbox_modules_that_keep_the_counts_write_message_statuses() -> None:
    """A new module setting a message's status must count the move (``outbox.counts.Moves``):
    this list makes whoever adds one look here."""
    src = Path(__file__).resolve().parents[2] / "src" / "sendas"
    writes = re.compile(r'(status=|\.status = |"status": )MessageStatus\.')
    writers = {
        str(path.relative_to(src)) for path in src.rglob("*.py") if writes.search(path.read_text())
    }
    assert writers == {
        "outbox/marking.py",  # Moves in mark_many, release_messages (claim_batch: claims.py)
        "outbox/record.py",  # Moves in record_many, reap_expired
        "outbox/late.py",  # Moves in defer_late
        "outbox/settle.py",  # Moves in every function
        "outbox/enqueue.py",  # init_counts (single messages have no letter)
        "outbox/outcomes.py",  # recipient results, not the row
        "outbox/bounces/apply.py",  # Moves from sent (or unknown) to bounced
    }
