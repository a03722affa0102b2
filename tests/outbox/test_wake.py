"""Mail queued on the worker's machine wakes it: the committed transaction touches the wake
file, a rolled-back one or one that queued nothing does not, and a ``sendas worker`` whose
next poll is half a minute away sends a message queued meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sendas.context import AppContext
from sendas.db.wake import WAKE_FILE, WakeWatch, wake_workers
from tests.conftest import make_actor
from tests.outbox.conftest import (
    SpawnWorker,
    make_alias,
    queue,
    statuses,
    stop_workers,
    wait_for,
    worker_started,
)
from tests.servers.smtpd import SmtpdFactory


class _Boom(Exception):
    pass


def test_only_a_committed_transaction_that_queued_mail_touches_the_wake_file(
    ctx: AppContext,
) -> None:
    watch = WakeWatch(ctx.settings.data_dir / WAKE_FILE)
    with ctx.db.write():
        pass
    assert not watch.changed()
    with pytest.raises(_Boom), ctx.db.write() as s:
        wake_workers(s)
        raise _Boom
    assert not watch.changed()
    with ctx.db.write() as s:
        wake_workers(s)
    assert watch.changed()
    assert not watch.changed()  # seen once
    with ctx.db.write() as s:  # a second one at once is not lost
        wake_workers(s)
    assert watch.changed()


def test_a_savepoint_neither_wakes_early_nor_drops_the_wake(ctx: AppContext) -> None:
    watch = WakeWatch(ctx.settings.data_dir / WAKE_FILE)
    with ctx.db.write() as s:
        wake_workers(s)
        with s.begin_nested():  # released: not the transaction's commit
            pass
        assert not watch.changed()
        with pytest.raises(_Boom), s.begin_nested():  # rolled back: the queued mail stays
            raise _Boom
    assert watch.changed()


@pytest.mark.timeout(90)
async def test_a_worker_between_polls_sends_a_message_queued_meanwhile(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = shared_sqlite
    env = {**env, "SENDAS_LOG_LEVEL": "INFO"}  # worker_started reads its start line
    actor = make_actor(ctx, "wake@example.com")
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, actor, server)
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        # Its first poll finds nothing; the next one is 60 s away.
        proc = await sendas_worker(env, "--poll-interval", "60", stderr=err)
    try:
        await worker_started(log)
        await asyncio.sleep(1.0)  # past its first poll
        [message_id] = queue(ctx, actor, alias_id, 1)
        # Well before the next poll could have found it.
        await wait_for(lambda: statuses(ctx, [message_id])[message_id] == "sent", within=30)
        assert len(server.recorder.messages) == 1
    finally:
        await stop_workers([proc])
