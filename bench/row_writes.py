"""Bytes written per message: a form letter of N recipients (~5 KB each once composed)
queued from a CSV, then sent by one ``sendas worker`` into Postfix's smtp-sink (SQLite).

    .venv/bin/python bench/row_writes.py [N]

Prints one JSON line: bytes the queueing process wrote per message (database and the
subjects spooled between the two passes), and bytes the worker wrote per message to
its files and sockets (``wchar`` of /proc/PID/io, read before it stops) less what went to
the SMTP server (the message bytes plus about 80 bytes of commands each): what the
database costs per message as it is claimed, marked, rendered, stored and recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from sendas.db.models import Message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import SENDAS, Site, csv_file, smtp_sink

SMTP_COMMANDS = 80  # MAIL FROM, RCPT TO, DATA, the final dot: bytes per message


def wchar(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/PID/io")


def body_bytes(site: Site) -> int:
    """The message bytes sent: read through ``Message.raw``, which unpacks them (with a
    form letter's dictionary); ``length(raw)`` in SQL would count the packed bytes at rest."""
    with site.ctx.db.read() as s:
        every = select(Message).options(selectinload(Message.body))
        return sum(len(m.raw or b"") for m in s.scalars(every))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    with tempfile.TemporaryDirectory(prefix="sendas-writes-") as name, smtp_sink() as port:
        root = Path(name)
        site = Site(root)
        [alias_id] = site.aliases(1, port, 0)
        rows = csv_file(root / "r.csv", n)
        before = wchar()
        site.campaign(alias_id, rows)
        enqueue = wchar() - before
        worker = subprocess.Popen([SENDAS, "worker", "--poll-interval", "0.1"], env=site.env)
        try:
            time.sleep(2.5)  # imports, first polls
            start = wchar(worker.pid)
            site.resume_all()
            end = time.monotonic() + 600
            while site.remaining() and time.monotonic() < end:
                time.sleep(0.2)
            time.sleep(1.0)  # the last commit
            written = wchar(worker.pid) - start
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        counts, _, _ = site.outcome()
        smtp = body_bytes(site) + SMTP_COMMANDS * n
        site.close()
    print(
        json.dumps(
            {
                "messages": n,
                "counts": counts,
                "enqueue_bytes_per_message": round(enqueue / n),
                "worker_bytes_per_message": round((written - smtp) / n),
                "smtp_bytes_per_message": round(smtp / n),
            }
        )
    )


if __name__ == "__main__":
    main()
