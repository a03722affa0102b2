"""The SMTP server of bench/chaos.py: aiosmtpd on 127.0.0.1, one login per alias, faults on
demand, and a durable record of what it accepted.

    python bench/chaos_smtpd.py CONFIG.json

CONFIG (written by chaos.py): ``port``, ``record`` (file), ``calm`` (flag file: while it is
absent, faults are injected), ``seed``, ``generation`` (restarts so far: a new random stream
each time), ``users`` ({login: {"password", "sent"}}: ``sent`` is the maildir folder of that
login's Sent folder), ``reject_rcpt`` / ``reject_data`` (addresses refused with a 5xx at RCPT
/ after the data, faults or not), the fault rates ``temp_rcpt``, ``temp_data``,
``drop_mid_data``, ``drop_after_dot``, and ``latency_ms`` (a pause before each reply to the
data, as a real server's queue write).

Every accepted message (the server took it: the reply to the data would be 2xx) is written to
``record`` as one line (append + fsync) *before* the reply, and filed in the login's Sent
folder (maildir, as Gmail files what its SMTP service accepts): a restart or SIGKILL of this
process loses no count. The other lines of ``record`` say what was refused or dropped::

    <unix time> <event> <message-id> <recipient> <login>

events: ``accepted`` (250 sent), ``accepted-dropped`` (accepted; the connection is closed
instead of the reply: the client cannot know), ``drop-mid-data`` (closed before the end of
the data: not accepted), ``temp-rcpt``/``temp-data`` (4xx), ``reject-rcpt``/``reject-data``
(5xx).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOSTNAME = "chaos-smtpd.test"
REJECT_RCPT = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
REJECT_DATA = "554 5.7.1 Message rejected: content policy"
# Plain temporary failures: no words that read as a rate limit ("try again later" would
# pause the whole alias, promise 5).
TEMP_RCPT = "450 4.2.1 Mailbox busy"
TEMP_DATA = "451 4.3.0 Temporary local problem"


class Book:
    """The record file and the Sent folders: both written before the server replies."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.fd = os.open(cfg["record"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.sent = {login: Path(u["sent"]) for login, u in cfg["users"].items()}
        self.uid, self.gid = cfg.get("mail_uid", -1), cfg.get("mail_gid", -1)
        self.seq = 0

    def note(self, event: str, message_id: str, rcpt: str, login: str) -> None:
        line = f"{time.time():.6f} {event} {message_id or '-'} {rcpt or '-'} {login or '-'}\n"
        os.write(self.fd, line.encode())
        os.fsync(self.fd)

    def file(self, login: str, raw: bytes) -> None:
        """Into ``<folder>/new`` through ``tmp``, as maildir delivery does."""
        folder = self.sent.get(login)
        if folder is None:
            return
        self.seq += 1
        name = f"{time.time():.6f}.P{os.getpid()}Q{self.seq}.{HOSTNAME}"
        tmp = folder / "tmp" / name
        with tmp.open("wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if self.uid >= 0:
            os.chown(tmp, self.uid, self.gid)
        os.rename(tmp, folder / "new" / name)


def message_id_of(raw: bytes) -> str:
    value = BytesHeaderParser().parsebytes(raw).get("Message-ID", "")
    return "".join(str(value).split())


class Faults:
    """Random faults while the calm file is absent; 5xx for the chosen recipients always."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"{cfg['seed']}/{cfg['generation']}")
        self.calm = Path(cfg["calm"])
        self.reject_rcpt = set(cfg["reject_rcpt"])
        self.reject_data = set(cfg["reject_data"])

    def roll(self, name: str) -> bool:
        rate = float(self.cfg[name])
        return rate > 0 and self.rng.random() < rate and not self.calm.exists()


class ChaosSMTP(SMTP):
    """aiosmtpd's server, with a connection that may drop in the middle of the data."""

    def __init__(self, handler: Handler, faults: Faults, book: Book, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.faults, self.book = faults, book

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.rcpt_tos and self.faults.roll("drop_mid_data"):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\n")  # a line or so of the data, then gone
            login = _login(self.session) if self.session is not None else ""
            self.book.note("drop-mid-data", "-", envelope.rcpt_tos[0], login)
            if self.transport is not None:
                self.transport.close()
            return
        await super().smtp_DATA(arg)


def _login(session: Session) -> str:
    data = getattr(session, "auth_data", None)
    if isinstance(data, LoginPassword):
        return str(data.login.decode())
    return str(data or "")


class Handler:
    def __init__(self, faults: Faults, book: Book, latency: float) -> None:
        self.faults, self.book, self.latency = faults, book, latency

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        login = _login(session)
        if address in self.faults.reject_rcpt:
            self.book.note("reject-rcpt", "-", address, login)
            return REJECT_RCPT.format(rcpt=address)
        if self.faults.roll("temp_rcpt"):
            self.book.note("temp-rcpt", "-", address, login)
            return TEMP_RCPT
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mid, rcpt, login = message_id_of(raw), envelope.rcpt_tos[0], _login(session)
        if self.latency:
            await asyncio.sleep(self.latency)
        if rcpt in self.faults.reject_data:
            self.book.note("reject-data", mid, rcpt, login)
            return REJECT_DATA
        if self.faults.roll("temp_data"):
            self.book.note("temp-data", mid, rcpt, login)
            return TEMP_DATA
        if self.faults.roll("drop_after_dot"):
            self.book.note("accepted-dropped", mid, rcpt, login)
            self.book.file(login, raw)
            if server.transport is not None:
                server.transport.close()
            return "250 never sent"
        self.book.note("accepted", mid, rcpt, login)
        self.book.file(login, raw)
        return "250 2.0.0 OK queued"


def authenticator(users: dict[str, dict[str, str]]) -> Any:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user = users.get(data.login.decode())
            if user is not None and user["password"] == data.password.decode():
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    return check


async def serve(cfg: dict[str, Any]) -> None:
    faults, book = Faults(cfg), Book(cfg)
    handler = Handler(faults, book, float(cfg.get("latency_ms", 0)) / 1000)
    check = authenticator(cfg["users"])

    def factory() -> ChaosSMTP:
        return ChaosSMTP(
            handler,
            faults,
            book,
            hostname=HOSTNAME,
            ident="chaos-smtpd",
            authenticator=check,
            auth_required=True,
            auth_require_tls=False,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, "127.0.0.1", int(cfg["port"]), family=socket.AF_INET, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"chaos-smtpd listening on 127.0.0.1:{cfg['port']}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    cfg["generation"] = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    asyncio.run(serve(cfg))


if __name__ == "__main__":
    main()
