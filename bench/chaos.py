"""Chaos run: does every message of a big form letter reach the server exactly once, or end
``failed``/``unknown``, while workers, the SMTP server and PostgreSQL die under it?

    .venv/bin/python bench/chaos.py [--recipients 10000] [--seed S] [--keep DIR]

A form letter of N recipients split over 3 aliases (each its own SMTP login, each with an IMAP
account on a private Dovecot) on PostgreSQL (SENDAS_BENCH_POSTGRES_URL, else a private server)
with 3 ``sendas worker`` processes. While it runs (the *chaos phase*, until --chaos-until of
the letter is decided):

- a random worker is SIGKILLed every --kill-every seconds (uniform) and a new one started;
- the SMTP server (bench/chaos_smtpd.py) is SIGKILLed twice and down a few seconds each time;
- PostgreSQL is restarted once (``pg_ctl restart -m fast``; a private server only);
- the server answers some transactions with 4xx (retried later), refuses some recipients with
  5xx (permanently: ``failed`` with the reason), and drops connections in the middle of the
  data or right after its final dot, before the reply (accepted, the client never heard:
  ``unknown``).

The server writes every accepted message's Message-ID to a record file (append + fsync
before the reply) and files it in the login's Sent folder on the Dovecot, as Gmail does.
Then the faults stop, and the script waits (--timeout) until nothing is queued, sending or
retrying, and a little more (--settle-wait) for ``unknown`` messages to be settled from the
Sent folders. It counts at the server and in the database and prints the figures and the
timeline of what it did; the exit status is 1 when a message was lost or duplicated,
2 when messages were still waiting at the timeout (reported apart, not as lost).
The random choices come from --seed (printed; given one, the same chaos is planned again,
though timings differ from run to run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BENCH, PYTHON, ROOT, SENDAS, _fresh_database, free_port, say, wait_port

sys.path.insert(0, str(ROOT))

from pydantic import SecretStr
from sqlalchemy import func, select

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Lane, Message
from sendas.schemas import AliasCreate, CampaignTemplatesIn, ImapCreate, RecipientIn, UserCreate
from sendas.services import aliases as alias_service
from sendas.services import users as user_service
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.recipients import json_rows
from sendas.services.common import Actor
from sendas.services.imap_accounts import create_imap_account

ALIASES = 3
ACTIVE = ("queued", "sending", "retrying")
SETTLED_HINT = "Confirmed in the Sent folder."
SUBJECT = "Chaos {{ first }}"
TEXT = "Dear {{ first }},\n\n" + "Lorem ipsum dolor sit amet, consectetur adipiscing.\n" * 12
ACCEPTED = ("accepted", "accepted-dropped")


class Timeline:
    """What the script did, with the seconds since the start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[float, str]] = []

    def add(self, text: str) -> None:
        t = time.monotonic() - self.t0
        self.events.append((t, text))
        say(f"  [{t:7.1f} s] {text}")


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the group, SIGKILL after ``grace`` s, then to whatever is left of it."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)
    _kill_group(proc, signal.SIGKILL)


# --- the servers ------------------------------------------------------------------------------


@dataclass
class Postgres:
    url: str
    restart: Callable[[], None] | None  # None: an external server, not ours to restart


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    url = os.environ.get("SENDAS_BENCH_POSTGRES_URL")
    if url:
        yield Postgres(_fresh_database(url), None)
        return
    from tests.servers.postgres import PrivatePostgres, find_binaries

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no PostgreSQL: apt-get install postgresql, or SENDAS_BENCH_POSTGRES_URL")
    server = PrivatePostgres(binaries)
    try:
        admin = server.start().render_as_string(hide_password=False)

        def restart() -> None:
            # pg_ctl restart reuses the options of the last start (postmaster.opts).
            server._run(
                binaries.pg_ctl,
                "restart",
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "-D",
                str(server.data),
                "-l",
                str(server.log),
            )

        yield Postgres(_fresh_database(admin), restart)
    finally:
        server.stop()


@contextlib.contextmanager
def dovecot() -> Iterator[Any]:
    from tests.servers.dovecot import PrivateDovecot

    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if os.geteuid() != 0 or not os.access(binary, os.X_OK):
        raise SystemExit("a private Dovecot needs root and dovecot-imapd")
    server = PrivateDovecot(binary)
    try:
        yield server.start()
    finally:
        server.stop()


class Smtpd:
    """bench/chaos_smtpd.py in its own process group, restartable on the same port."""

    def __init__(self, config: Path, log: IO[bytes], port: int) -> None:
        self.config, self.log, self.port = config, log, port
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [PYTHON, str(BENCH / "chaos_smtpd.py"), str(self.config), str(self.generation)]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.generation += 1
        wait_port(self.port, timeout=30)

    def kill(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, 5)
            self.proc = None


class Workers:
    """``count`` ``sendas worker`` processes, each in its own process group (its render
    processes die with it)."""

    def __init__(self, env: dict[str, str], logs: Path, timeline: Timeline) -> None:
        self.env, self.logs, self.timeline = env, logs, timeline
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self) -> None:
        self.started += 1
        with (self.logs / f"worker-{self.started}.log").open("wb") as log:
            proc = subprocess.Popen(
                [SENDAS, "worker", "--poll-interval", "0.2"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)

    def kill_one(self, rng: random.Random, holders: set[int]) -> bool:
        """SIGKILL one of those holding a lane (mid-submission), at random; False when none
        does yet. Killing a worker still importing (seconds on a loaded machine) would only
        starve the letter: with kills every few seconds no worker would ever get going."""
        busy = [p for p in self.procs if p.pid in holders]
        if not busy:
            return False
        victim = rng.choice(busy)
        _kill_group(victim, signal.SIGKILL)
        victim.wait()
        self.procs.remove(victim)
        self.start()
        self.timeline.add(f"SIGKILL worker pid {victim.pid}; started pid {self.procs[-1].pid}")
        return True

    def reap(self) -> None:
        """Replace the workers that ended by themselves (and say so: they should not)."""
        for proc in [p for p in self.procs if p.poll() is not None]:
            self.procs.remove(proc)
            self.start()
            self.timeline.add(
                f"worker pid {proc.pid} ended by itself (exit {proc.returncode}); "
                f"started pid {self.procs[-1].pid}"
            )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                _kill_group(proc, signal.SIGTERM)
        for proc in self.procs:
            _stop(proc, 30)
        self.procs = []


# --- the letter -------------------------------------------------------------------------------


@dataclass
class Letter:
    ctx: AppContext
    campaign_ids: list[int]
    total: int
    smtp_users: dict[str, dict[str, str]] = field(default_factory=dict)

    def statuses(self) -> Counter[str] | None:
        """Messages by status, or None while the database cannot answer (restarting)."""
        try:
            with self.ctx.db.read() as s:
                rows = s.execute(
                    select(Message.status, func.count())
                    .where(Message.campaign_id.in_(self.campaign_ids))
                    .group_by(Message.status)
                ).all()
        except Exception:  # PostgreSQL is restarting: ask again later
            return None
        return Counter({str(k): int(v) for k, v in rows})

    def lane_holders(self) -> set[int]:
        """Process ids of the workers holding a lane now (owner is ``host:pid:random``)."""
        try:
            with self.ctx.db.read() as s:
                owners = s.scalars(select(Lane.owner).where(Lane.owner.is_not(None))).all()
        except Exception:  # PostgreSQL is restarting
            return set()
        return {int(o.split(":")[1]) for o in owners if o and o.count(":") >= 2}


def mailboxes(server: Any) -> list[tuple[Any, Path]]:
    """Three Dovecot accounts and their Sent folders' maildirs (a first login creates them)."""
    out = []
    for _ in range(ALIASES):
        account = server.add_account(layout="special")
        imap = server.connect(account)
        try:
            typ, data = imap.select('"Sent Items"')
            assert typ == "OK", data
        finally:
            imap.logout()
        folder = server.root / "mail" / account.username / "Maildir" / ".Sent Items"
        if not (folder / "new").is_dir():
            raise SystemExit(f"Dovecot's Sent folder is not where expected: {folder}")
        out.append((account, folder))
    return out


def recipients(count: int, rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """All addresses, and those the server refuses at RCPT and after the data (5xx)."""
    everyone = [f"r{i}@example.net" for i in range(count)]
    chosen = rng.sample(everyone, max(2, count // 100))  # 1 %: half at RCPT, half after DATA
    half = len(chosen) // 2
    return everyone, sorted(chosen[:half]), sorted(chosen[half:])


def create_letter(
    ctx: AppContext, dv: Any, boxes: list[tuple[Any, Path]], port: int, addresses: list[str]
) -> Letter:
    """The user, its IMAP accounts and aliases, and one form letter per alias, through the
    services (as bench/run.py does)."""
    smtp_users: dict[str, dict[str, str]] = {}
    alias_ids: list[int] = []
    with ctx.db.write() as s:
        user = user_service.create_user(
            s, UserCreate(email="chaos@example.com", name="Chaos", password=SecretStr("chaos pw 1"))
        )
        actor = Actor.of(user)
        for k, (account, folder) in enumerate(boxes):
            imap = create_imap_account(
                s,
                actor,
                ImapCreate(
                    description=f"mailbox {k}",
                    imap_server=f"127.0.0.1:{dv.imaps_port}",
                    username=account.username,
                    password=SecretStr(account.password),
                    tls="implicit",
                    sent_folder=account.sent_folder,
                    ca_bundle=dv.ca_pem,
                ),
                ctx.secrets,
            )
            # The SMTP login is the mailbox's (as at Gmail): only then does a copy missing
            # from its Sent folder mean the server never accepted the message.
            login, password = account.username, f"smtp pw {k} {random.random():.6f}"
            smtp_users[login] = {"password": password, "sent": str(folder)}
            alias, _ = alias_service.create_alias(
                s,
                actor,
                AliasCreate(
                    description=f"alias {k}",
                    alias_name=f"Alias {k}",
                    from_address=f"alias{k}@example.com",
                    smtp_server=f"127.0.0.1:{port}",
                    smtp_username=login,
                    smtp_password=SecretStr(password),
                    tls="none",
                    allow_plaintext_auth=True,
                    imap_account_id=imap.id,
                    delay_ms=0,
                ),
                ctx.secrets,
            )
            alias_ids.append(alias.id)
    ids = []
    for k, alias_id in enumerate(alias_ids):
        rows = [
            RecipientIn(email=a, fields={"first": a.split("@")[0]}) for a in addresses[k::ALIASES]
        ]
        data = CampaignTemplatesIn(alias_id=alias_id, subject=SUBJECT, text=TEXT)
        ids.append(create_campaign(ctx.db, actor, data, json_rows(rows)).id)
    return Letter(ctx, ids, len(addresses), smtp_users)


# --- the chaos --------------------------------------------------------------------------------


@dataclass
class Plan:
    """One-off events, each when this fraction of the letter is decided."""

    events: list[tuple[float, str]]

    def due(self, progress: float) -> str | None:
        if self.events and progress >= self.events[0][0]:
            return self.events.pop(0)[1]
        return None


def chaos_phase(
    args: argparse.Namespace,
    rng: random.Random,
    letter: Letter,
    workers: Workers,
    smtpd: Smtpd,
    pg: Postgres,
    timeline: Timeline,
) -> None:
    plan = Plan(sorted([(0.15, "smtp"), (0.35, "postgres"), (0.6, "smtp")]))
    end = time.monotonic() + args.chaos_seconds
    next_kill = time.monotonic() + rng.uniform(*args.kill_every)
    progress, shown = 0.0, 0
    while True:
        workers.reap()
        counts = letter.statuses()
        if counts is not None:
            progress = 1 - sum(counts[s] for s in ACTIVE) / letter.total
            if int(progress * 20) > shown:  # every 5 %
                shown = int(progress * 20)
                say(f"    {progress:.0%} decided: {dict(sorted(counts.items()))}")
        if time.monotonic() >= next_kill and workers.kill_one(rng, letter.lane_holders()):
            next_kill = time.monotonic() + rng.uniform(*args.kill_every)
        # Out of time: what is left of the plan happens now, so that every run has it all.
        late = time.monotonic() >= end
        event = plan.due(2.0 if late else progress)
        if event == "smtp":
            down = rng.uniform(2, 5)
            smtpd.kill()
            timeline.add(f"SMTP server SIGKILLed at {progress:.0%} decided; down {down:.1f} s")
            time.sleep(down)
            smtpd.start()
            timeline.add("SMTP server up again")
        elif event == "postgres" and pg.restart is not None:
            timeline.add(f"PostgreSQL restart (pg_ctl restart -m fast) at {progress:.0%} decided")
            pg.restart()
            timeline.add("PostgreSQL up again")
        elif event == "postgres":
            timeline.add("PostgreSQL restart skipped: SENDAS_BENCH_POSTGRES_URL is not ours")
        if (late or progress >= args.chaos_until) and not plan.events:
            if late:
                timeline.add(f"chaos phase over (--chaos-seconds) at {progress:.0%} decided")
            return
        time.sleep(0.25)


def drain(args: argparse.Namespace, letter: Letter, workers: Workers, timeline: Timeline) -> None:
    """Until nothing is active (bounded), then a little longer while some are ``unknown``."""
    end = time.monotonic() + args.timeout
    settle_end: float | None = None
    last = ""
    while time.monotonic() < end:
        workers.reap()
        counts = letter.statuses()
        if counts is None:
            time.sleep(0.5)
            continue
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        if shown != last and int(time.monotonic()) % 5 == 0:
            say(f"    {shown}")
            last = shown
        if not any(counts[s] for s in ACTIVE):
            if not counts["unknown"]:
                timeline.add("nothing active, nothing unknown")
                return
            if settle_end is None:
                timeline.add(f"nothing active; {counts['unknown']} unknown: waiting for settling")
                settle_end = time.monotonic() + args.settle_wait
            elif time.monotonic() >= settle_end:
                timeline.add(f"settle wait over: {counts['unknown']} still unknown")
                return
        else:
            settle_end = None
        time.sleep(0.5)
    timeline.add(f"timed out after {args.timeout:.0f} s with work still active")


# --- the figures ------------------------------------------------------------------------------


def server_record(path: Path) -> tuple[Counter[str], dict[str, list[str]]]:
    """Events by kind, and every line about each Message-ID."""
    kinds: Counter[str] = Counter()
    lines: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        kinds[parts[1]] += 1
        lines.setdefault(parts[2], []).append(line)
    return kinds, lines


def _reason(reply: str | None, hint: str | None) -> str:
    text = (reply or hint or "(no reply recorded)").splitlines()[0]
    return re.sub(r"<[^>]*>", "<rcpt>", text)[:100]


def figures(letter: Letter, record: Path) -> int:
    """Print the counts; 1 when a message was lost or duplicated, 2 when some were still
    waiting at the timeout."""
    kinds, by_mid = server_record(record)
    with letter.ctx.db.read() as s:
        rows = s.execute(
            select(
                Message.id, Message.status, Message.message_id, Message.server_reply, Message.hint
            ).where(Message.campaign_id.in_(letter.campaign_ids))
        ).all()

    def accepted(mid: str) -> int:
        return sum(1 for line in by_mid.get(mid, []) if line.split()[1] in ACCEPTED)

    status = Counter(r.status for r in rows)
    once = [r for r in rows if accepted(r.message_id) == 1]
    dup = [r for r in rows if accepted(r.message_id) > 1]
    # Still queued at the timeout is not lost: it is reported apart (and exits 2).
    unfinished = [r for r in rows if r.status in ACTIVE]
    lost = [
        r
        for r in rows
        if accepted(r.message_id) == 0 and r.status not in ("failed", "unknown", *ACTIVE)
    ]
    failed = Counter(_reason(r.server_reply, r.hint) for r in rows if r.status == "failed")
    unknown = [r for r in rows if r.status == "unknown"]
    reached = sum(1 for r in unknown if accepted(r.message_id))
    settled = sum(1 for r in rows if r.status == "sent" and SETTLED_HINT in (r.hint or ""))
    failed_yet_accepted = [r for r in rows if r.status == "failed" and accepted(r.message_id)]
    ours = {r.message_id for r in rows}
    strangers = sum(1 for mid in by_mid if mid != "-" and mid not in ours)

    print()
    print(f"enqueued                       {len(rows):6d}")
    print(
        f"delivered exactly once         {len(once):6d}  (accepted once at the server; "
        f"{sum(1 for r in once if r.status == 'sent')} of them 'sent' in the database)"
    )
    print(f"failed, with reason            {status['failed']:6d}")
    for reason, n in failed.most_common():
        print(f"    {n:6d}  {reason}")
    print(
        f"unknown                        {status['unknown']:6d}  ({reached} reached the server, "
        f"{len(unknown) - reached} did not)"
    )
    print(f"settled from the mailbox       {settled:6d}  ('{SETTLED_HINT}')")
    print(f"lost                           {len(lost):6d}  (must be 0)")
    print(f"duplicated                     {len(dup):6d}  (must be 0)")
    if unfinished:
        print(f"unfinished at the timeout      {len(unfinished):6d}  (queued, sending or retrying)")
    print(f"database statuses              {dict(sorted(status.items()))}")
    print(f"server events                  {dict(sorted(kinds.items()))}")
    if failed_yet_accepted:
        print(f"failed yet accepted at server  {len(failed_yet_accepted):6d}")
    if strangers:
        print(f"accepted, not of this letter   {strangers:6d}")
    for label, bad in (
        ("lost", lost),
        ("duplicated", dup),
        ("failed yet accepted", failed_yet_accepted),
    ):
        for r in bad[:5]:
            print(
                f"  {label}: message {r.id} {r.message_id} status {r.status} "
                f"reply {r.server_reply!r} hint {r.hint!r}"
            )
            for line in by_mid.get(r.message_id, []):
                print(f"      server: {line}")
    return 1 if lost or dup else 2 if unfinished else 0


# --- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> int:
    rng = random.Random(args.seed)
    timeline = Timeline()
    logs = tmp / "logs"
    logs.mkdir()
    pg = stack.enter_context(postgres())
    dv = stack.enter_context(dovecot())
    boxes = mailboxes(dv)
    port = free_port()
    addresses, reject_rcpt, reject_data = recipients(args.recipients, rng)

    settings = Settings(
        data_dir=tmp / "data", database_url=pg.url, embedded_worker=False, log_level="WARNING"
    )
    ctx = AppContext.build(settings)
    stack.callback(ctx.close)
    say(f"queueing {args.recipients} recipients over {ALIASES} aliases")
    letter = create_letter(ctx, dv, boxes, port, addresses)
    timeline.add(f"letter queued: campaigns {letter.campaign_ids}")

    record, calm = tmp / "accepted.log", tmp / "calm"
    mail_user = pwd.getpwnam("dovecot")
    config = {
        "port": port,
        "record": str(record),
        "calm": str(calm),
        "seed": args.seed,
        "users": letter.smtp_users,
        "reject_rcpt": reject_rcpt,
        "reject_data": reject_data,
        "temp_rcpt": args.temp_rate / 2,
        "temp_data": args.temp_rate / 2,
        "drop_mid_data": args.drop_rate / 2,
        "drop_after_dot": args.drop_rate / 2,
        "latency_ms": args.latency_ms,
        "mail_uid": mail_user.pw_uid,
        "mail_gid": mail_user.pw_gid,
    }
    (tmp / "smtpd.json").write_text(json.dumps(config))
    smtpd = Smtpd(tmp / "smtpd.json", stack.enter_context((logs / "smtpd.log").open("ab")), port)
    stack.callback(smtpd.stop)
    smtpd.start()
    timeline.add(f"SMTP server on 127.0.0.1:{port}")

    env = {
        **os.environ,
        "SENDAS_DATA_DIR": str(tmp / "data"),
        "SENDAS_DATABASE_URL": pg.url,
        "SENDAS_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT / "src"),
    }
    workers = Workers(env, logs, timeline)
    stack.callback(workers.stop)
    for _ in range(args.workers):
        workers.start()
    timeline.add(f"{args.workers} workers started: pids {[p.pid for p in workers.procs]}")

    chaos_phase(args, rng, letter, workers, smtpd, pg, timeline)
    calm.touch()
    timeline.add("faults stop: no more kills, restarts, 4xx or dropped connections")
    drain(args, letter, workers, timeline)
    workers.stop()
    smtpd.stop()
    status = figures(letter, record)
    print()
    print("timeline:")
    for t, text in timeline.events:
        print(f"  {t:7.1f} s  {text}")
    if args.keep:
        keep = Path(args.keep)
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(record, keep / "accepted.log")
        shutil.copytree(logs, keep / "logs", dirs_exist_ok=True)
        print(f"server record and logs kept in {keep}")
    return status


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None, help="random choices (printed)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument(
        "--kill-every", type=float, nargs=2, default=(5.0, 12.0), metavar=("MIN", "MAX")
    )
    parser.add_argument(
        "--chaos-until",
        type=float,
        default=0.9,
        help="the chaos phase ends when this fraction of the letter is decided",
    )
    parser.add_argument("--chaos-seconds", type=float, default=600.0, help="chaos phase, at most")
    parser.add_argument("--temp-rate", type=float, default=0.02, help="4xx per transaction")
    parser.add_argument("--drop-rate", type=float, default=0.01, help="dropped connections")
    parser.add_argument("--latency-ms", type=float, default=2.0, help="server pause per message")
    parser.add_argument("--timeout", type=float, default=900.0, help="wait for the drain, at most")
    parser.add_argument(
        "--settle-wait",
        type=float,
        default=60.0,
        help="after the drain, wait this long for 'unknown' to be settled",
    )
    parser.add_argument("--keep", help="copy the server record and the logs here")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    print(
        f"chaos: seed {args.seed}, {args.recipients} recipients over {ALIASES} aliases, "
        f"{args.workers} workers, PostgreSQL",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sendas-chaos-")))
        tmp.chmod(0o755)
        status = run(args, tmp, stack)
    sys.exit(status)


if __name__ == "__main__":
    main()
