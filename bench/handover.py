"""SIGKILL hand-over: three ``sendas worker`` processes on PostgreSQL, one 3,000-recipient
form letter into Postfix's ``smtp-sink``; the worker holding the letter's lane is SIGKILLed
1 s after it took the lane. Prints the time from the kill to another worker taking the lane over,
and to the letter's completion, with the default heartbeat (1 s) and takeover (5 s).

    .venv/bin/python bench/handover.py [--recipients 3000] [--kills 1]

PostgreSQL: SENDAS_BENCH_POSTGRES_URL, else a private server (tests/servers/postgres.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    DEADLINE,
    SENDAS,
    Site,
    _fresh_database,
    csv_file,
    postgres,
    say,
    smtp_sink,
)
from sqlalchemy import select

from sendas.db.models import Lane
from sendas.outbox.lanes import alias_lane


def _owner(site: Site, lane: str) -> str | None:
    with site.ctx.db.read() as s:
        return s.scalar(select(Lane.owner).where(Lane.name == lane))


def one_kill(tmp: Path, url: str, port: int, recipients: int, after: float) -> tuple[float, ...]:
    site = Site(tmp, url)
    try:
        alias_id = site.aliases(1, port, 0)[0]
        site.campaign(alias_id, csv_file(tmp / "rows.csv", recipients))
        lane = alias_lane(alias_id)
        procs = [
            subprocess.Popen(
                [SENDAS, "worker", "--poll-interval", "0.1"], env=site.env, start_new_session=True
            )
            for _ in range(3)
        ]
        try:
            time.sleep(2.5)  # imports, first polls
            site.resume_all()
            start = time.monotonic() + 60
            while _owner(site, lane) is None and time.monotonic() < start:
                time.sleep(0.02)  # a loaded machine: the workers may still be starting
            time.sleep(after)
            holder = _owner(site, lane)
            if holder is None:
                raise SystemExit("the letter finished before the kill: use more recipients")
            victim = next(p for p in procs if p.pid == int(holder.split(":")[1]))
            os.killpg(victim.pid, signal.SIGKILL)
            killed = time.monotonic()
            victim.wait()
            taken = None
            end = killed + DEADLINE
            while site.remaining() and time.monotonic() < end:
                if taken is None and _owner(site, lane) not in (None, holder):
                    taken = time.monotonic() - killed
                time.sleep(0.02)
            done = time.monotonic() - killed
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                p.wait(timeout=60)
        counts, _, _ = site.outcome()
        say(f"  kill -> takeover {taken if taken is not None else float('nan'):.2f} s, "
            f"kill -> letter done {done:.2f} s, {counts}")  # fmt: skip
        return (taken or float("nan"), done, float(counts.get("unknown", 0)))
    finally:
        site.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=1)
    parser.add_argument("--after", type=float, default=1.0, help="seconds before the kill")
    args = parser.parse_args()
    results = []
    with postgres() as url, smtp_sink() as port:
        if url is None:
            raise SystemExit("no PostgreSQL")
        for k in range(args.kills):
            with tempfile.TemporaryDirectory(prefix="sendas-handover-") as name:
                say(f"kill {k + 1}/{args.kills}")
                # One database per kill; run.py names them by the second.
                fresh = url if k == 0 else (time.sleep(1.1), _fresh_database(url))[1]
                results.append(one_kill(Path(name), fresh, port, args.recipients, args.after))
    taken, done, unknown = (sorted(col) for col in zip(*results, strict=True))
    print(f"SIGKILL hand-over, {args.kills} kill(s), {args.recipients} recipients, 3 workers, "
          f"PostgreSQL: kill -> takeover median {statistics.median(taken):.2f} s "
          f"({taken[0]:.2f}-{taken[-1]:.2f}); kill -> letter done median "
          f"{statistics.median(done):.2f} s ({done[0]:.2f}-{done[-1]:.2f}); unknown per kill "
          f"max {unknown[-1]:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
