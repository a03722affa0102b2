"""A worker stops even when its bounce watch does not: the wait for the watch at shutdown
is bounded (its rounds' blocking IMAP steps each take up to the timeout)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sendas.config import Settings
from sendas.context import AppContext
from sendas.outbox.bounces.watch import BounceWatch
from tests.outbox.conftest import running_worker


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedded_worker=False, bounce_scan=True)


async def test_the_worker_stops_while_its_bounce_watch_hangs(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    ended: list[bool] = []

    async def hung(self: object) -> None:  # a round stuck in its IMAP steps
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(True)

    monkeypatch.setattr(BounceWatch, "run", hung)
    async with running_worker(ctx):  # its exit waits for run() (20 s at most) or fails
        await asyncio.wait_for(started.wait(), 20)
    assert ended == [True]  # the watch was cancelled, not left running
