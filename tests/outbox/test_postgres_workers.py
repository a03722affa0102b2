"""Several ``sendas worker`` processes on one PostgreSQL outbox: no message is sent twice,
and each alias's pacing holds across the workers: at the server (kernel receive times of
each MAIL FROM), every submission of an alias starts at least the delay after its previous
one, whichever worker made either; the workers' own records agree."""

from __future__ import annotations

import asyncio
import signal
import time
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sendas.context import AppContext
from sendas.db.models import Message
from tests.conftest import make_actor
from tests.outbox.conftest import SpawnWorker, make_alias, queue, received_ids, sink_alias
from tests.servers import stamping_sink
from tests.servers.smtpd import SmtpdFactory

pytestmark = pytest.mark.postgres

OPTIONS = ("--lease-seconds", "2", "--poll-interval", "0.05", "--lane-hold-seconds", "0.3")
DELAY_MS = 40


def sent_count(ctx: AppContext) -> int:
    with ctx.db.read() as s:
        query = select(func.count()).select_from(Message).where(Message.status == "sent")
        return s.scalar(query) or 0


def worker_starts(logs: list[Path]) -> dict[str, list[float]]:
    """Submission starts the workers logged, per lane, merged across workers, in order."""
    starts: dict[str, list[float]] = {}
    for path in logs:
        for line in path.read_text().splitlines():
            _, found, rest = line.partition(" sendas.outbox.starts ")
            if found:
                lane, at = rest.split()
                starts.setdefault(lane, []).append(float(at))
    return {lane: sorted(times) for lane, times in starts.items()}


@pytest.mark.timeout(120)
async def test_workers_share_the_outbox_without_doubles_and_keep_pacing(
    pg_shared: tuple[AppContext, dict[str, str]],
    smtpd: SmtpdFactory,
    sendas_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ctx, env = pg_shared
    actor = make_actor(ctx, "pg@example.com")
    # The paced aliases send to a sink in a process of its own that stamps each MAIL FROM
    # with the kernel's receive time: the gaps the server saw, to the microsecond.
    stamps = tmp_path / "stamps.txt"
    with stamping_sink.running(stamps) as sink_port:
        server = await smtpd("none", pipelining=True)
        paced = [sink_alias(ctx, actor, sink_port, f"paced{i}", DELAY_MS) for i in range(3)]
        fast = make_alias(ctx, actor, server, name="Fast")
        for alias_id in paced:
            queue(ctx, actor, alias_id, 25)
        queue(ctx, actor, fast, 300)
        total = 3 * 25 + 300

        logs = [tmp_path / f"worker{k}.log" for k in range(3)]
        procs = []
        for path in logs:
            with path.open("wb") as err:
                procs.append(await sendas_worker(env, *OPTIONS, stderr=err))
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                done = await asyncio.to_thread(sent_count, ctx)
                if done == total:
                    break
                await asyncio.sleep(0.1)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(p.wait(), 20) for p in procs]
    assert codes == [0, 0, 0]

    with ctx.db.read() as s:
        assert s.scalars(select(Message.status).distinct()).all() == ["sent"]
    counts = received_ids(server.recorder)
    assert len(counts) == 300 and max(counts.values()) == 1
    at_server = stamping_sink.read_stamps(stamps)
    recorded = worker_starts(logs)
    for i, alias_id in enumerate(paced):
        # Every message once at the server, each start at least DELAY_MS after the alias's
        # previous one, whichever worker made either: on the workers' own records (taken
        # as each MAIL FROM was handed to the socket) and at the server.
        times = at_server[f"paced{i}@example.test"]
        assert len(times) == 25, (i, len(times))
        gaps = [b - a for a, b in pairwise(times)]
        assert min(gaps) >= DELAY_MS / 1000, (i, gaps)
        own = recorded[f"alias:{alias_id}"]
        assert len(own) == 25
        own_gaps = [b - a for a, b in pairwise(own)]
        assert min(own_gaps) >= DELAY_MS / 1000, (i, min(own_gaps))
        print(f"\npaced{i}: server min gap {min(gaps) * 1000:.2f} ms, total "
              f"{(times[-1] - times[0]) * 1000:.0f} ms vs {24 * DELAY_MS} ms")  # fmt: skip
