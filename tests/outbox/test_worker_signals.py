"""``sendas worker`` stops within a couple of seconds of SIGTERM, exit code 0, also while
its server refuses every connection (a deployment stops workers with SIGTERM and waits a
few seconds before SIGKILL)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from sendas.context import AppContext
from tests.conftest import make_actor
from tests.outbox.conftest import SpawnWorker, queue, sink_alias, worker_started
from tests.servers.process import free_port

STOP_WITHIN = 3.0


async def logged(log: Path, text: bytes, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while text not in await asyncio.to_thread(log.read_bytes):
        assert time.monotonic() < deadline, f"the worker did not log {text!r}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_sigterm_stops_a_worker_whose_server_refuses_connections(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = shared_sqlite
    actor = make_actor(ctx, "stop@example.com")
    alias_id = sink_alias(ctx, actor, free_port(), "refused", 0)  # nothing listens there
    queue(ctx, actor, alias_id, 5)
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = await sendas_worker(
            {**env, "SENDAS_LOG_LEVEL": "INFO"}, "--poll-interval", "0.05", stderr=err
        )
    await worker_started(log)
    await logged(log, b"cannot reach the server")  # it tried, and retries later

    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proc.wait(), 20)
    took = time.monotonic() - began
    assert code == 0, log.read_text()
    assert took < STOP_WITHIN, f"the worker took {took:.1f} s to stop:\n{log.read_text()}"


@pytest.mark.timeout(60)
async def test_sigterm_stops_a_worker_waiting_for_a_silent_server(
    shared_sqlite: tuple[AppContext, dict[str, str]],
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    """The server takes the connection and never greets: the worker stops without waiting
    out its SMTP timeout (nothing was submitted yet)."""
    ctx, env = shared_sqlite
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    actor = make_actor(ctx, "silent@example.com")
    queue(ctx, actor, sink_alias(ctx, actor, port, "silent", 0), 3)
    log = tmp_path / "worker.log"
    try:
        with log.open("wb") as err:
            env = {**env, "SENDAS_LOG_LEVEL": "INFO", "SENDAS_SMTP_TIMEOUT": "30"}
            proc = await sendas_worker(env, "--poll-interval", "0.05", stderr=err)
        await worker_started(log)
        await asyncio.wait_for(accepted.wait(), 20)  # it waits for the greeting now

        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 40)
        took = time.monotonic() - began
    finally:
        for writer in held:
            writer.close()
        server.close()
    assert code == 0, log.read_text()
    assert took < STOP_WITHIN, f"the worker took {took:.1f} s to stop:\n{log.read_text()}"
