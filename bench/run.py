"""sendas benchmarks against anchors measured in the same run, all on 127.0.0.1.

    .venv/bin/python bench/run.py [--quick] [--only a,b,c,d,e,f] [--messages N]
                                  [--processes N] [--a-postgres]

Scenarios (issue 4, item 7); every one is bounded and stops by itself:

a  loopback, delay 0, ~5 KB messages through the whole outbox (campaign enqueue -> ``sendas
   worker`` process -> SMTP) into Postfix's ``smtp-sink``: sendas msgs/s vs nodemailer's pooled
   transport (1 connection; 5 connections / 5 aliases; 1 relay alias with max_connections 5
   vs one pool of 5 connections) and vs ``smtp-source -d`` (C ceiling). The two
   5-connection cases also run with ``--processes`` (2) worker processes, as
   SENDAS_WORKER_PROCESSES=2 gives (one lane per alias still), on SQLite and with
   ``--a-postgres`` on PostgreSQL: extra rows, same rounds.
   The three run in interleaved rounds (``--rounds``, 3) on one sink and their medians are
   compared: single runs on a shared 2-core machine drift by tens of percent.
b  the same over a 20 ms round trip (bench/proxy.py): 1 connection vs nodemailer with 1, and a
   relay alias with max_connections 5 vs nodemailer with a pool of 5; then f's SIGKILL over
   that round trip (1 connection, 3 kills): ``unknown`` per kill vs the window.
c  pacing: 200 messages at delay_ms=50 into a sink stamping each MAIL FROM with the kernel's
   receive time (tests/servers/stamping_sink.py): smallest gap and total vs 199 x 50 ms; one
   worker on SQLite, and two workers on PostgreSQL (SENDAS_BENCH_POSTGRES_URL, else a private
   server). The sink and the workers run on different CPUs (apart_cpus), as a server on
   another machine would.
d  500 aliases x 10 messages at delay_ms=1000, one worker: wall time.
e  enqueue 1,000,000 recipients from a CSV (bench/enqueue_csv.py, own process): seconds and
   peak RSS.
f  SIGKILL at full speed: ``unknown`` left per kill of a worker sending on loopback, over 5
   kills, printed with the window (SENDAS_SEND_WINDOW).

sendas is timed from the moment its work becomes available: campaigns are queued paused,
the worker is started and left idle, then every campaign is resumed at once (t0); the end
is the last ``sent_at``. nodemailer is timed from before its first sendMail to its last
callback. Install the anchor once: ``npm install --prefix bench nodemailer``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select, update

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Campaign, Lane, Message
from sendas.db.wake import wake_workers
from sendas.schemas import AliasCreate, CampaignTemplatesIn, RecipientIn, UserCreate
from sendas.services import aliases as alias_service
from sendas.services import users as user_service
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.lifecycle import pause_campaign
from sendas.services.campaigns.recipients import RowSource, csv_rows, json_rows
from sendas.services.common import Actor

# Every server here is on 127.0.0.1, which the outbound policy refuses unless allowed; set
# before any Settings() is built, and inherited by the workers this script starts.
os.environ["SENDAS_OUTBOUND_ALLOW"] = "127.0.0.0/8,::1/128"

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
SENDAS = str(Path(sys.executable).with_name("sendas"))


def prose(size: int = 5030, seed: int = 13) -> str:
    """Varied text: words made of English-like syllables in sentences and wrapped
    paragraphs, which zlib level 1 shrinks by about 2.2x, as it does English prose. (The
    body used to be one line repeated, which compresses fiftyfold: it flattered any change
    that stores or sends fewer bytes.)"""
    rng = random.Random(seed)
    syllables = re.findall(r"\w+", "ba con de er for gra in ly ment na or pro re sa ti un "
                           "ver wi ex al ce di ous ing tion st ple ma")  # fmt: skip
    common = re.findall(r"\w+", "the of and to a in is that for it as with be on not we "
                        "you this our your will")  # fmt: skip
    vocab = ["".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
             for _ in range(600)]  # fmt: skip
    paragraphs: list[str] = []
    while sum(len(p) + 2 for p in paragraphs) < size:
        sentences = []
        for _ in range(rng.randint(3, 6)):
            words = [rng.choice(common) if rng.random() < 0.4 else rng.choice(vocab)
                     for _ in range(rng.randint(8, 20))]  # fmt: skip
            sentence = " ".join(words)
            sentences.append(sentence[0].upper() + sentence[1:] + rng.choice(".....?!"))
        paragraphs.append(textwrap.fill(" ".join(sentences), 72))
    return "\n\n".join(paragraphs)[:size].rsplit(" ", 1)[0] + ".\n"


TEXT_TEMPLATE = "Dear {{ first }},\n\n" + prose()  # ~5.3 KB once composed
# nodemailer_bench.js sends the same body (with the same name in place of {{ first }}).
os.environ["BENCH_BODY_TEMPLATE"] = TEXT_TEMPLATE
SUBJECT = "Hello {{ first }}"
HOLD = timedelta(days=1)
DEADLINE = 600.0  # no scenario waits longer than this for the outbox to drain


@dataclass
class Result:
    scenario: str
    sendas: str
    anchor: str
    ratio: str
    target: str
    note: str = ""


RESULTS: list[Result] = []


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def find_tool(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/lib/postfix/sbin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{name} not found: apt-get install postfix")


@contextmanager
def process(
    cmd: list[str], *, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        if port is not None:
            wait_port(port)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def smtp_sink() -> Iterator[int]:
    port = free_port()
    # -m: smtp-sink serves 256 sessions at once by default; scenario d holds one
    # connection per alias (500), as 500 aliases on 500 providers would.
    cmd = [find_tool("smtp-sink"), "-m", "2048", f"127.0.0.1:{port}", "2048"]
    if os.geteuid() == 0:
        cmd[1:1] = ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
    with process(cmd, port=port):
        yield port


@contextmanager
def delay_proxy(target: int, one_way_ms: float) -> Iterator[int]:
    port = free_port()
    with process(
        [PYTHON, str(BENCH / "proxy.py"), str(port), str(target), str(one_way_ms)], port=port
    ):
        yield port


def stamping_sink(path: Path, cpus: str | None = None) -> AbstractContextManager[int]:
    """tests/servers/stamping_sink.py: MAIL FROM times as the kernel received them."""
    sys.path.insert(0, str(ROOT))
    from tests.servers.stamping_sink import running

    return running(path, cpus=cpus)


def apart_cpus() -> tuple[str | None, str | None]:
    """CPUs for a server and for sendas that do not share one (``taskset -c`` lists), or
    (None, None) on a single CPU. On loopback the sender's write runs the receiver's side
    of TCP and wakes it, often on the same CPU, where it can preempt the sender before its
    write returns; a server on another machine does neither."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[-1]), ",".join(str(c) for c in cpus[:-1])


# --- a sendas installation in a temporary folder --------------------------------------------


class Site:
    """A fresh sendas database (SQLite in ``root``, or the given PostgreSQL URL)."""

    def __init__(self, root: Path, database_url: str | None = None) -> None:
        self.settings = Settings(
            data_dir=root / "data",
            database_url=database_url,
            embedded_worker=False,
            log_level="WARNING",
        )
        self.ctx = AppContext.build(self.settings)
        self.env = {
            **os.environ,
            "SENDAS_DATA_DIR": str(root / "data"),
            "SENDAS_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT / "src"),
        }
        if database_url:
            self.env["SENDAS_DATABASE_URL"] = database_url
        else:
            self.env.pop("SENDAS_DATABASE_URL", None)
        with self.ctx.db.write() as s:
            user = user_service.create_user(
                s,
                UserCreate(
                    email="bench@example.com", name="Bench", password=SecretStr("bench-password")
                ),
            )
            self.actor = Actor.of(user)

    def close(self) -> None:
        self.ctx.close()

    def aliases(self, count: int, port: int, delay_ms: int, max_connections: int = 1) -> list[int]:
        ids = []
        with self.ctx.db.write() as s:
            for k in range(count):
                alias, _ = alias_service.create_alias(
                    s,
                    self.actor,
                    AliasCreate(
                        description=f"alias {k}",
                        alias_name=f"Alias {k}",
                        from_address=f"alias{k}@example.com",
                        smtp_server=f"127.0.0.1:{port}",
                        tls="none",
                        delay_ms=delay_ms,
                        max_connections=max_connections,
                    ),
                    self.ctx.secrets,
                )
                ids.append(alias.id)
        return ids

    def campaign(self, alias_id: int, rows: RowSource) -> int:
        """Queue a campaign and pause it at once: the worker must not start on it yet."""
        data = CampaignTemplatesIn(alias_id=alias_id, subject=SUBJECT, text=TEXT_TEMPLATE)
        created = create_campaign(self.ctx.db, self.actor, data, rows)
        with self.ctx.db.write() as s:
            pause_campaign(s, self.actor, created.id)
        return created.id

    def single_messages(self, alias_id: int, count: int) -> None:
        """Queue pre-composed single messages, held back (due tomorrow) until released."""
        from sendas.compose import Content, Sender
        from sendas.outbox.enqueue import compose_for, enqueue

        text = TEXT_TEMPLATE.replace("{{ first }}", "First")
        with self.ctx.db.write() as s:
            for i in range(count):
                content = Content(to=[f"user{i}@example.com"], subject=f"Hello {i}", text=text)
                composed = compose_for(Sender("Alias 0", "alias0@example.com"), content)
                enqueue(s, composed, content, user_id=self.actor.id, alias_id=alias_id)
            s.execute(update(Message).values(next_attempt_at=datetime.now(UTC) + HOLD))

    def resume_all(self) -> float:
        """Release every campaign and held message at once; returns that moment (epoch s)."""
        with self.ctx.db.write() as s:
            s.execute(
                update(Campaign)
                .where(Campaign.status == "paused")
                .values(status="running", paused_reason=None)
            )
            now = datetime.now(UTC)
            s.execute(
                update(Message)
                .where(Message.next_attempt_at > now + HOLD / 2)
                .values(next_attempt_at=now)
            )
            # As resuming a letter or queueing a message does (sendas.db.wake).
            wake_workers(s)
            started = time.time()
        return started

    def _checkpoint(self) -> None:
        """Copy the set-up's pages (tens of MB of queued messages) from SQLite's log into the
        database file before the clock starts: left pending, that copy fell on the first
        commits after the release (the first lane was taken 0.1 s later), a cost of the
        set-up, not of the sending."""
        if self.ctx.db.is_sqlite:
            with self.ctx.db.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def remaining(self) -> int:
        with self.ctx.db.read() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.status.in_(("queued", "sending", "retrying")))
                )
                or 0
            )

    def lanes_by_worker(self) -> dict[str, int]:
        """How many lanes each worker drives now (CPU-independent evidence of sharing)."""
        with self.ctx.db.read() as s:
            rows = s.execute(
                select(Lane.owner, func.count()).where(Lane.owner.is_not(None)).group_by(Lane.owner)
            )
            return {str(owner): int(n) for owner, n in rows}

    def outcome(self) -> tuple[dict[str, int], float, float]:
        """Counts by status, and the first and last ``sent_at`` (epoch seconds)."""
        with self.ctx.db.read() as s:
            counts = {
                k: int(v)
                for k, v in s.execute(select(Message.status, func.count()).group_by(Message.status))
            }
            first, last = s.execute(
                select(func.min(Message.sent_at), func.max(Message.sent_at))
            ).one()
        ts = [_epoch(x) for x in (first, last)]
        return counts, ts[0], ts[1]

    @contextmanager
    def workers(
        self, count: int = 1, cpus: str | None = None
    ) -> Iterator[list[subprocess.Popen[bytes]]]:
        pin = ["taskset", "-c", cpus] if cpus else []
        cmds = [[*pin, SENDAS, "worker", "--poll-interval", "0.1"] for _ in range(count)]
        procs = [subprocess.Popen(c, env=self.env) for c in cmds]
        try:
            yield procs
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def run(
        self,
        total: int,
        *,
        workers: int = 1,
        settle: float = 2.5,
        until_idle: bool = False,
        cpus: str | None = None,
    ) -> tuple[float, float, dict[str, int]]:
        """Start the worker(s), release the campaigns, wait until drained. ``until_idle``:
        after ``settle``, also wait until every worker and its render processes are idle (on
        a loaded machine starting them takes longer than ``settle``). ``cpus``: keep the
        workers (and their render processes) to those CPUs.

        Returns (seconds from release to the last sent_at, first sent_at - release, counts).
        """
        self._checkpoint()
        with self.workers(workers, cpus) as procs:
            time.sleep(settle)  # imports, migrations check, first polls: not what we measure
            if until_idle:
                _wait_idle([p.pid for p in procs])
            t0 = self.resume_all()
            end = time.monotonic() + DEADLINE
            most: dict[str, int] = {}  # worker -> most lanes it drove at once
            while self.remaining() and time.monotonic() < end:
                for owner, n in self.lanes_by_worker().items():
                    most[owner] = max(n, most.get(owner, 0))
                time.sleep(0.2)
        if workers > 1:
            say(f"  most lanes each worker drove at once: {sorted(most.values(), reverse=True)}")
        counts, first, last = self.outcome()
        if counts.get("sent", 0) != total:
            say(f"  warning: {counts} (expected {total} sent)")
        return last - t0, first - t0, counts


def cpu_times(stat: Path) -> tuple[float, float]:
    """(user, system) seconds of a /proc stat file, a process's or a thread's (the fields
    after the command name, which may itself hold spaces)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children now running (Linux /proc; 0 if gone)."""
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for p in [str(pid), *children]:
            total += sum(cpu_times(Path(f"/proc/{p}/stat")))
    except OSError:
        pass
    return total


def _wait_idle(pids: list[int], window: float = 1.0, limit: float = 90.0) -> None:
    """Until the processes use under 10% of a core in each of two ``window`` (at most
    ``limit`` s). An idle worker polling every 0.1 s uses about 4% (its polls, beats and
    announcements); one still importing gets far more CPU time than that even on a machine
    loaded 10 times over."""
    end = time.monotonic() + limit
    before = sum(_cpu_seconds(p) for p in pids)
    quiet = 0
    while time.monotonic() < end and quiet < 2:
        time.sleep(window)
        now = sum(_cpu_seconds(p) for p in pids)
        quiet = quiet + 1 if now - before < 0.10 * window * len(pids) else 0
        before = now


def _epoch(value: datetime | str | None) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def csv_file(path: Path, count: int, start: int = 0) -> RowSource:
    with path.open("w") as f:
        f.write("email,first,last\n")
        for i in range(start, start + count):
            f.write(f"user{i}@example.com,First{i},Last{i}\n")
    return csv_rows(lambda: path.open("rb"))


# --- anchors ----------------------------------------------------------------------------------


def nodemailer(port: int, count: int, transports: int, connections: int = 1) -> float | None:
    """nodemailer msgs/s (``transports`` pools of ``connections`` each), or None when node
    or nodemailer is missing."""
    if not (BENCH / "node_modules" / "nodemailer").is_dir() or not shutil.which("node"):
        say("  nodemailer not installed: npm install --prefix bench nodemailer")
        return None
    out = subprocess.run(
        [
            "node",
            str(BENCH / "nodemailer_bench.js"),
            str(port),
            str(count),
            str(transports),
            str(connections),
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    data = json.loads(out.stdout)
    if data["failed"]:
        say(f"  nodemailer: {data['failed']} failed")
    return float(data["sent"]) / float(data["elapsed"])


def smtp_source(port: int, count: int, sessions: int) -> float:
    """Postfix's C load generator: ``-d`` keeps each connection for many messages."""
    per_session = max(1, count // sessions)
    cmd = [
        find_tool("smtp-source"),
        "-d",
        "-s",
        str(sessions),
        "-m",
        str(per_session * sessions),
        "-l",
        "5000",
        "-f",
        "alias@example.com",
        "-t",
        "user@example.com",
        f"127.0.0.1:{port}",
    ]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, timeout=DEADLINE, capture_output=True)
    return per_session * sessions / (time.perf_counter() - started)


def ratio(ours: float | None, theirs: float | None, *, higher_is_better: bool = True) -> str:
    if not ours or not theirs:
        return "-"
    return f"{(ours / theirs if higher_is_better else theirs / ours):.2f}x"


# --- scenarios --------------------------------------------------------------------------------


def _sendas_loopback(
    tmp: Path,
    port: int,
    count: int,
    aliases: int,
    connections: int = 1,
    workers: int = 1,
    database_url: str | None = None,
) -> tuple[float, float, float]:
    """One sendas run of scenario a: (msgs/s, first sent after s, enqueue s). ``workers``
    ``sendas worker`` processes, as ``sendas serve`` starts with SENDAS_WORKER_PROCESSES."""
    site = Site(tmp, database_url)
    try:
        ids = site.aliases(aliases, port, 0, connections)
        per = count // aliases
        t = time.perf_counter()
        for k, alias_id in enumerate(ids):
            site.campaign(alias_id, csv_file(tmp.with_suffix(f".{k}.csv"), per, k * per))
        enqueue = time.perf_counter() - t
        seconds, first, counts = site.run(per * aliases, workers=workers, until_idle=True)
    finally:
        site.close()
    return counts.get("sent", 0) / seconds, first, enqueue


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


@dataclass
class MultiProcess:
    """The extra sendas runs of the 5-connection cases: ``processes`` worker processes
    (SENDAS_WORKER_PROCESSES), on SQLite, and on PostgreSQL when ``postgres_url`` is set
    (a fresh database per run)."""

    processes: int = 2
    postgres_url: str | None = None

    def runs(self) -> list[tuple[str, str | None]]:
        if self.processes < 2:
            return []
        out: list[tuple[str, str | None]] = [("SQLite", None)]
        if self.postgres_url:
            out.append(("PostgreSQL", self.postgres_url))
        return out


def _multi_rounds(
    tmp: Path, port: int, count: int, shape: tuple[int, int], multi: MultiProcess, r: int
) -> dict[str, float]:
    """One round of the multi-process runs of one case: database name -> msgs/s."""
    aliases, conns = shape
    rates: dict[str, float] = {}
    for name, url in multi.runs():
        fresh = _fresh_database(url) if url else None
        rate, _, _ = _sendas_loopback(
            tmp / f"a{aliases}x{conns}-{name}{multi.processes}-{r}",
            port,
            count,
            aliases,
            conns,
            workers=multi.processes,
            database_url=fresh,
        )
        rates[name] = rate
        say(f"   round {r + 1}: sendas {multi.processes} processes on {name} {rate:.0f}/s")
    return rates


def _multi_results(
    label: str, multi: MultiProcess, rates: dict[str, list[float]], node: list[float]
) -> None:
    med = statistics.median
    for name, values in rates.items():
        RESULTS.append(
            Result(
                f"{label}, {multi.processes} worker processes ({name}) vs nodemailer",
                f"{_spread(values)} msg/s",
                f"{_spread(node)} msg/s" if node else "-",
                ratio(med(values), med(node) if node else None),
                ">= 1.5x",
                f"SENDAS_WORKER_PROCESSES={multi.processes}; same rounds",
            )
        )


def scenario_a(tmp: Path, count: int, rounds: int, multi: MultiProcess | None = None) -> None:
    """Rounds of sendas, nodemailer and smtp-source, interleaved on one sink: this machine's
    speed drifts by tens of percent from minute to minute, so each side gets the same
    minutes, and the medians are compared. The 5-connection cases also run with ``multi``
    worker processes in the same rounds (an extra row each)."""
    multi = multi or MultiProcess()
    # (aliases, connections per alias): the relay case is one alias with a pool of 5.
    for aliases, conns in ((1, 1), (1, 5), (5, 1)):
        say(
            f"a: loopback, {count} messages, {aliases} alias(es) x {conns} connection(s), "
            f"{rounds} interleaved rounds"
        )
        ours: list[float] = []
        node: list[float] = []
        source: list[float] = []
        multi_rates: dict[str, list[float]] = {}
        with smtp_sink() as port:
            for r in range(rounds):
                rate, first, enqueue = _sendas_loopback(
                    tmp / f"a{aliases}x{conns}-{r}", port, count, aliases, conns
                )
                ours.append(rate)
                if aliases * conns > 1:
                    shape = (aliases, conns)
                    for name, value in _multi_rounds(tmp, port, count, shape, multi, r).items():
                        multi_rates.setdefault(name, []).append(value)
                theirs = nodemailer(port, count, aliases, conns)
                if theirs:
                    node.append(theirs)
                source.append(smtp_source(port, count, aliases * conns))
                say(
                    f"   round {r + 1}: sendas {rate:.0f}/s (first sent after {first:.2f} s; "
                    f"enqueue {enqueue:.1f} s), nodemailer {theirs or 0:.0f}/s, "
                    f"smtp-source {source[-1]:.0f}/s"
                )
        med = statistics.median
        label = f"a loopback {count} msgs, {aliases * conns} conn"
        if conns > 1:
            label += f" (1 relay alias x {conns})"
        node_med = med(node) if node else None
        RESULTS.append(
            Result(
                f"{label} vs nodemailer",
                f"{_spread(ours)} msg/s",
                f"{_spread(node)} msg/s" if node else "-",
                ratio(med(ours), node_med),
                ">= 1.5x",
                "medians of interleaved rounds (min-max)",
            )
        )
        _multi_results(label, multi, multi_rates, node)
        RESULTS.append(
            Result(
                f"{label} vs smtp-source -d",
                f"{med(ours):.0f} msg/s",
                f"{med(source):.0f} msg/s",
                ratio(med(ours), med(source)),
                "(C ceiling)",
            )
        )
        if aliases == conns == 1:
            scenario_a_precomposed(tmp, count, node_med)


def scenario_a_precomposed(tmp: Path, count: int, node: float | None) -> None:
    """The worker alone: single messages composed at enqueue (outside the timing)."""
    say(f"a': loopback, {count} pre-composed single messages, 1 connection")
    with smtp_sink() as port:
        site = Site(tmp / "a-pre")
        try:
            [alias_id] = site.aliases(1, port, 0)
            site.single_messages(alias_id, count)
            seconds, _, counts = site.run(count, until_idle=True)
        finally:
            site.close()
    ours = counts.get("sent", 0) / seconds
    say(f"   sendas worker alone {ours:.0f}/s")
    RESULTS.append(
        Result(
            f"a' {count} pre-composed singles, 1 conn vs nodemailer",
            f"{ours:.0f} msg/s",
            f"{node:.0f} msg/s" if node else "-",
            ratio(ours, node),
            "(worker alone)",
        )
    )


def scenario_b(tmp: Path, count: int) -> None:
    """20 ms round trip: one alias with 1 connection vs nodemailer with 1, then a relay
    alias with max_connections 5 vs nodemailer with a pool of 5 (same proxy, same sink)."""
    for conns, target in ((1, ">= 2.0x"), (5, ">= 1.2x")):
        say(f"b: 20 ms round trip, {count} messages, {conns} connection(s)")
        with smtp_sink() as sink, delay_proxy(sink, 10.0) as port:
            site = Site(tmp / f"b{conns}")
            try:
                [alias_id] = site.aliases(1, port, 0, conns)
                site.campaign(alias_id, csv_file(tmp / f"b{conns}.csv", count))
                # Idle first, as in a: render processes still importing on a loaded
                # machine held the first messages for seconds (67/s instead of 190/s).
                seconds, _, counts = site.run(count, until_idle=True)
            finally:
                site.close()
            ours = counts.get("sent", 0) / seconds
            node = nodemailer(port, count, 1, conns)
        say(f"   sendas {ours:.1f}/s, nodemailer {node or 0:.1f}/s")
        label = f"b 20 ms RTT {count} msgs, {conns} conn"
        if conns > 1:
            label += f" (1 relay alias x {conns})"
        RESULTS.append(
            Result(
                label,
                f"{ours:.1f} msg/s",
                f"{node:.1f} msg/s" if node else "-",
                ratio(ours, node),
                target,
            )
        )
    _crash_at_rtt(tmp, max(count, 800))


def _crash_at_rtt(tmp: Path, count: int, kills: int = 3) -> None:
    """Scenario f's SIGKILL over the same 20 ms round trip (1 connection): ``unknown`` per
    kill, against the window (SENDAS_SEND_WINDOW) it must stay within."""
    from sendas.db.models import utcnow
    from sendas.outbox.record import reap_expired

    window = Settings().send_window
    say(f"b: SIGKILL over a 20 ms round trip, {kills} kills, window {window}")
    per_kill: list[int] = []
    with smtp_sink() as sink, delay_proxy(sink, 10.0) as port:
        site = Site(tmp / "bf")
        try:
            [alias_id] = site.aliases(1, port, 0)
            site.campaign(alias_id, csv_file(tmp / "bf.csv", count))
            site.resume_all()
            for _ in range(kills):
                # Past the first claims, marked before the link's speed was known.
                per_kill.append(_kill_once(site, reap_expired, utcnow, sent=150))
        finally:
            site.close()
    say(f"   unknown per kill: {per_kill}")
    RESULTS.append(
        Result(
            f"b unknown per SIGKILL at 20 ms RTT (window {window})",
            f"{statistics.median(per_kill):.0f} ({min(per_kill)}-{max(per_kill)}) per kill",
            "-",
            "-",
            f"<= {window}",
            f"{kills} kills: {per_kill}",
        )
    )


def scenario_f(tmp: Path, count: int, kills: int) -> None:
    """SIGKILL at full speed: a ``sendas worker`` sending a form letter on loopback is
    killed ``kills`` times mid-window; after each kill the dead worker's ``sending`` rows
    are reaped (as a live worker would once its leases ran out) and counted: only what
    may have reached the server becomes ``unknown``, the rest of its claims comes back."""
    from sendas.db.models import utcnow
    from sendas.outbox.record import reap_expired

    window = Settings().send_window
    say(f"f: SIGKILL at full speed, {kills} kills, window {window}")
    per_kill: list[int] = []
    with smtp_sink() as port:
        site = Site(tmp / "f")
        try:
            [alias_id] = site.aliases(1, port, 0)
            site.campaign(alias_id, csv_file(tmp / "f.csv", count))
            site.resume_all()
            for _ in range(kills):
                per_kill.append(_kill_once(site, reap_expired, utcnow))
        finally:
            site.close()
    say(f"   unknown per kill: {per_kill}")
    RESULTS.append(
        Result(
            f"f unknown per SIGKILL at full speed (window {window})",
            f"{statistics.median(per_kill):.0f} ({min(per_kill)}-{max(per_kill)}) per kill",
            "-",
            "-",
            f"<= {window}",
            f"{kills} kills: {per_kill}",
        )
    )


def _kill_once(
    site: Site, reap: Callable[..., int], now: Callable[[], datetime], sent: int = 300
) -> int:
    """One worker started, killed once it sent ``sent`` more; the unknown it left."""
    counts = site.outcome()[0]
    before = counts.get("sent", 0)
    cmd = [SENDAS, "worker", "--poll-interval", "0.05", "--lease-seconds", "1"]
    proc = subprocess.Popen(cmd, env=site.env)
    end = time.monotonic() + DEADLINE
    while site.outcome()[0].get("sent", 0) < before + sent and time.monotonic() < end:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    with site.ctx.db.write() as s:
        return reap(s, now() + timedelta(seconds=30))


def _gaps(path: Path) -> tuple[float, float, int]:
    stamps = sorted(float(line.split()[0]) for line in path.read_text().splitlines() if line)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return (min(gaps) if gaps else float("nan")), stamps[-1] - stamps[0], len(stamps)


def scenario_c(tmp: Path, count: int, postgres_url: str | None) -> None:
    delay_ms = 50
    ideal = (count - 1) * delay_ms / 1000
    runs: list[tuple[str, str | None, int]] = [("SQLite, 1 worker", None, 1)]
    if postgres_url:
        runs.append(("PostgreSQL, 2 workers", postgres_url, 2))
    else:
        say("c: no PostgreSQL available: the two-worker run is skipped")
    sink_cpu, sendas_cpus = apart_cpus()
    if sink_cpu:
        say(f"c: the sink runs on CPU {sink_cpu}, the workers on {sendas_cpus} (apart_cpus)")
    for name, url, workers in runs:
        say(f"c: pacing, {count} messages at {delay_ms} ms, {name}")
        stamps = tmp / f"c-{workers}.txt"
        with stamping_sink(stamps, sink_cpu) as port:
            site = Site(tmp / f"c{workers}", url)
            try:
                [alias_id] = site.aliases(1, port, delay_ms)
                site.campaign(alias_id, csv_file(tmp / f"c{workers}.csv", count))
                site.run(count, workers=workers, cpus=sendas_cpus)
            finally:
                site.close()
        smallest, total, seen = _gaps(stamps)
        off = (total - ideal) / ideal * 100
        say(
            f"   {seen} MAIL FROM, smallest gap {smallest * 1000:.2f} ms, total {total:.3f} s "
            f"vs {ideal:.2f} s ({off:+.2f}%)"
        )
        RESULTS.append(
            Result(
                f"c pacing {count}x{delay_ms} ms, {name}: smallest gap",
                f"{smallest * 1000:.2f} ms",
                f"{delay_ms} ms",
                f"{smallest * 1000 / delay_ms:.3f}",
                ">= 50 ms",
            )
        )
        RESULTS.append(
            Result(
                f"c pacing {count}x{delay_ms} ms, {name}: total",
                f"{total:.3f} s",
                f"{ideal:.2f} s",
                f"{off:+.2f}%",
                "within 1%",
            )
        )


def scenario_d(tmp: Path, aliases: int, per_alias: int) -> None:
    say(f"d: {aliases} aliases x {per_alias} messages at 1000 ms, 1 worker")
    ideal = (per_alias - 1) * 1.0
    with smtp_sink() as port:
        site = Site(tmp / "d")
        try:
            ids = site.aliases(aliases, port, 1000)
            for k, alias_id in enumerate(ids):
                recipients = [
                    RecipientIn(email=f"u{k}x{i}@example.com", fields={"first": f"F{i}"})
                    for i in range(per_alias)
                ]
                site.campaign(alias_id, json_rows(recipients))
            seconds, first, counts = site.run(aliases * per_alias)
        finally:
            site.close()
    say(f"   wall {seconds:.2f} s from release to last sent (first after {first:.2f} s), {counts}")
    RESULTS.append(
        Result(
            f"d {aliases} aliases x {per_alias} at 1000 ms, 1 worker",
            f"{seconds:.2f} s",
            f"{ideal:.0f} s ideal",
            ratio(seconds, ideal, higher_is_better=False),
            "< 12 s",
        )
    )


def scenario_e(tmp: Path, rows: int) -> None:
    say(f"e: enqueue {rows} recipients from CSV (own process)")
    path = tmp / "e.csv"
    csv_file(path, rows)
    out = subprocess.run(
        [PYTHON, str(BENCH / "enqueue_csv.py"), str(tmp / "e"), str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    say(f"   {data}")
    RESULTS.append(
        Result(
            f"e enqueue {rows} from CSV: time",
            f"{data['seconds']:.1f} s",
            f"{data['baseline_rss_mb']:.0f} MB at start",
            "-",
            "< 60 s",
        )
    )
    RESULTS.append(
        Result(
            f"e enqueue {rows} from CSV: peak RSS",
            f"{data['peak_rss_mb']:.0f} MB",
            "-",
            "-",
            "< 300 MB",
        )
    )


# --- PostgreSQL for the two-worker pacing run -------------------------------------------------


@contextmanager
def postgres() -> Iterator[str | None]:
    url = os.environ.get("SENDAS_BENCH_POSTGRES_URL")
    if url:
        yield _fresh_database(url)
        return
    try:
        sys.path.insert(0, str(ROOT))
        from tests.servers.postgres import PrivatePostgres, find_binaries
    except ImportError:
        yield None
        return
    binaries = find_binaries()
    if binaries is None:
        yield None
        return
    server = PrivatePostgres(binaries)
    try:
        admin = server.start().render_as_string(hide_password=False)
        yield _fresh_database(admin)
    except Exception as exc:  # a bench without PostgreSQL still measures the rest
        say(f"PostgreSQL could not start: {exc}")
        yield None
    finally:
        server.stop()


def _fresh_database(admin_url: str) -> str:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"sendas_bench_{os.getpid()}_{int(time.time())}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return admin.set(database=name).render_as_string(hide_password=False)


# --- main -------------------------------------------------------------------------------------


def print_table() -> None:
    headers = ("scenario", "sendas", "anchor", "ratio", "target", "note")
    rows = [(r.scenario, r.sendas, r.anchor, r.ratio, r.target, r.note) for r in RESULTS]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join(f"{{:{w}}}" for w in widths)
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def _scenario_a_main(tmp: Path, count: int, rounds: int, args: argparse.Namespace) -> None:
    if not args.a_postgres:
        scenario_a(tmp, count, rounds, MultiProcess(args.processes))
        return
    with postgres() as url:
        scenario_a(tmp, count, rounds, MultiProcess(args.processes, url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a few minutes)")
    parser.add_argument("--only", default="abcdef", help="scenarios to run, e.g. 'ac'")
    parser.add_argument("--messages", type=int, help="messages for scenario a")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of scenario a (medians are compared)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="worker processes of the extra 5-connection rows of scenario a (below 2: none)",
    )
    parser.add_argument(
        "--a-postgres",
        action="store_true",
        help="also run those rows on PostgreSQL (SENDAS_BENCH_POSTGRES_URL or a private server)",
    )
    args = parser.parse_args()
    quick = args.quick
    counts: dict[str, Any] = {
        "a": args.messages or (4_000 if quick else 20_000),
        "b": 150 if quick else 500,
        "c": 200,
        "d": (100, 10) if quick else (500, 10),
        "e": 100_000 if quick else 1_000_000,
        "f": 3_000 if quick else 10_000,
    }
    only = set(args.only.replace(",", ""))
    steps: list[tuple[str, Callable[[Path], None]]] = [
        ("a", lambda t: _scenario_a_main(t, counts["a"], 1 if quick else args.rounds, args)),
        ("b", lambda t: scenario_b(t, counts["b"])),
        ("d", lambda t: scenario_d(t, *counts["d"])),
        ("e", lambda t: scenario_e(t, counts["e"])),
        ("f", lambda t: scenario_f(t, counts["f"], 5)),
    ]
    with tempfile.TemporaryDirectory(prefix="sendas-bench-") as name:
        tmp = Path(name)
        for key, step in steps:
            if key in only:
                step(tmp)
        if "c" in only:
            with postgres() as url:
                scenario_c(tmp, counts["c"], url)
    print()
    print_table()


if __name__ == "__main__":
    main()
