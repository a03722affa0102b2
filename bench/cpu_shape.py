"""Where one sendas run's CPU goes: a form letter per alias sent by one ``sendas worker``
into Postfix's smtp-sink (SQLite), with CPU time per message of each process and of the
worker's busiest threads.

    .venv/bin/python bench/cpu_shape.py [ALIASES] [CONNECTIONS] [MESSAGES]

Defaults: 5 aliases x 1 connection, 20,000 messages (bench a's five-aliases row, one run).
Prints the rate, then microseconds of CPU per message (user + system) for the worker, each
render process and the sink, the system's busy share of all CPUs, and the worker's four
busiest threads (user / system).

On a shared machine the rate of identical runs drifts by 15-20%; CPU per message drifts
less, and the split between threads and processes is what this is for: to tell whether a
change moved work off the worker's critical path (its database thread and event loop)
before spending a full ``bench/run.py`` on it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DEADLINE, Site, _wait_idle, cpu_times, csv_file, smtp_sink


def _processes(pid: int) -> list[int]:
    """The worker and its children (the render processes)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [pid] + [int(k) for t in tasks for k in (t / "children").read_text().split()]


def _threads(pid: int) -> dict[str, tuple[float, float]]:
    """Each thread's (user, system) seconds: ``loop`` is the main thread (the event loop and
    SMTP); Python does not name the others for the kernel, so they go by thread id (in a
    form letter run the busiest of them is the database thread)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return {"loop" if t.name == str(pid) else t.name: cpu_times(t / "stat") for t in tasks}


def _busy() -> tuple[int, int]:
    """(busy, all) jiffies of every CPU: all less idle and iowait."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def main(aliases: int = 5, connections: int = 1, messages: int = 20_000) -> None:
    per = messages // aliases
    with tempfile.TemporaryDirectory() as d, smtp_sink() as port:
        tmp = Path(d)
        site = Site(tmp)
        for k, alias in enumerate(site.aliases(aliases, port, 0, connections)):
            site.campaign(alias, csv_file(tmp / f"{k}.csv", per, k * per))
        site._checkpoint()
        pgrep = subprocess.run(["pgrep", "-n", "smtp-sink"], capture_output=True, text=True)
        sink = int(pgrep.stdout)
        with site.workers(1) as procs:
            worker = procs[0].pid
            _wait_idle([worker])
            pids = [*_processes(worker), sink]
            before = {p: cpu_times(Path(f"/proc/{p}/stat")) for p in pids}
            threads0 = _threads(worker)
            busy0 = _busy()
            t0 = site.resume_all()
            while site.remaining():
                if time.time() - t0 > DEADLINE:
                    raise SystemExit(f"the outbox did not drain within {DEADLINE:g} s")
                time.sleep(0.1)
            after = {p: cpu_times(Path(f"/proc/{p}/stat")) for p in pids}
            threads1 = _threads(worker)
            busy1 = _busy()
        counts, _first, last = site.outcome()
        site.close()
    sent = counts.get("sent", 0)
    print(f"{aliases} alias(es) x {connections} connection(s), {messages} messages: "
          f"{sent / (last - t0):,.0f}/s, {counts}")  # fmt: skip
    names = ["worker"] + [f"render{i}" for i in range(len(pids) - 2)] + ["sink"]
    per_msg = {n: sum(after[p]) - sum(before[p]) for n, p in zip(names, pids, strict=True)}
    print("CPU per message (us):",
          " ".join(f"{n}={1e6 * s / max(sent, 1):.0f}" for n, s in per_msg.items()),
          f"| system busy {100 * (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]):.0f}%")  # fmt: skip
    spent = {
        t: (u - threads0.get(t, (0.0, 0.0))[0], s - threads0.get(t, (0.0, 0.0))[1])
        for t, (u, s) in threads1.items()
    }
    top = sorted(spent.items(), key=lambda kv: -sum(kv[1]))[:4]
    print("worker threads, us per message (user/sys):",
          " ".join(f"{t}={1e6 * u / max(sent, 1):.0f}/{1e6 * s / max(sent, 1):.0f}"
                   for t, (u, s) in top))  # fmt: skip


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
