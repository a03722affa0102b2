"""A live ``sendas serve`` on a free port, a real aiosmtpd server, and headless Chromium.

The SMTP server runs in its own thread (aiosmtpd's Controller) with STARTTLS and AUTH,
its certificate signed by a CA made at test time; the sendas process trusts that CA through
``SSL_CERT_FILE``, as an operator would. Playwright's sync API drives Debian's Chromium.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography.fernet import Fernet
from pydantic import SecretStr

from sendas.config import Settings
from sendas.context import AppContext
from sendas.schemas import UserCreate
from sendas.services import users as user_service
from tests.servers.need import need_binary
from tests.servers.process import child_options, free_port, stop_group

SMTP_USER = "mailer@example.test"
SMTP_PASSWORD = "right password 1"
LOGIN_PASSWORD = "correct horse battery"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


# --- SMTP -------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class MailSink:
    """What the SMTP server accepted, thread-safe."""

    host: str
    port: int
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]

    def wait_for(self, address: str, count: int = 1, timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{address}: {len(self.to(address))} of {count} messages arrived")


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.sink.lock:
            self.sink.messages.append(
                Received(
                    str(envelope.mail_from),
                    [str(r) for r in envelope.rcpt_tos],
                    bytes(envelope.original_content or b""),
                )
            )
        return "250 2.0.0 OK queued"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login.decode() == SMTP_USER
        and data.password.decode() == SMTP_PASSWORD
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="session")
def web_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def mail_sink(web_ca: trustme.CA) -> Iterator[MailSink]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    web_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    port = free_port()
    sink = MailSink("127.0.0.1", port)
    controller = Controller(
        _Handler(sink),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=_authenticator,
        auth_exclude_mechanism=["CRAM-MD5"],
    )
    controller.start()
    yield sink
    controller.stop()


# --- the live server ----------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    settings: Settings
    ctx: AppContext
    log: Path
    _users: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_user(self, prefix: str = "user", *, admin: bool = False) -> str:
        """A fresh user (so tests do not see each other's aliases); returns the email."""
        email = f"{prefix}{next(self._users)}@example.com"
        with self.ctx.db.write() as s:
            user_service.create_user(
                s,
                UserCreate(
                    email=email,
                    name=prefix.title(),
                    role="admin" if admin else "user",
                    password=SecretStr(LOGIN_PASSWORD),
                ),
            )
        return email


@contextmanager
def run_live_server(root: Path, web_ca: trustme.CA) -> Iterator[LiveServer]:
    """``sendas serve`` in a subprocess (embedded worker on) with its own database in
    ``root``; one admin exists before it starts."""
    data_dir = root / "data"
    ca_file = root / "ca.pem"
    web_ca.cert_pem.write_to_path(str(ca_file))
    key = Fernet.generate_key().decode()
    port = free_port()
    env = {
        **os.environ,
        "SENDAS_DATA_DIR": str(data_dir),
        "SENDAS_SECRET_KEY": key,
        "SENDAS_HOST": "127.0.0.1",
        "SENDAS_PORT": str(port),
        "SENDAS_BASE_URL": f"http://127.0.0.1:{port}",
        "SENDAS_EMBEDDED_WORKER": "true",
        "SENDAS_SMTP_TIMEOUT": "5",
        "SENDAS_LOG_LEVEL": "warning",
        "SSL_CERT_FILE": str(ca_file),
    }
    settings = Settings(data_dir=data_dir, secret_key=SecretStr(key), embedded_worker=False)
    ctx = AppContext.build(settings)  # migrates; the admin exists before the server starts
    log = root / "serve.log"
    server = LiveServer(f"http://127.0.0.1:{port}", data_dir, settings, ctx, log)
    server.new_user("admin", admin=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("sendas")), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            **child_options(),
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sendas serve did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.1)
        yield server
    finally:
        stop_group(proc, grace=10)
        ctx.close()


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, web_ca: trustme.CA, mail_sink: MailSink
) -> Iterator[LiveServer]:
    """The server most browser tests share (each test makes its own users)."""
    with run_live_server(tmp_path_factory.mktemp("live"), web_ca) as server:
        yield server


# --- the browser --------------------------------------------------------------------------


# Playwright's sync API runs its event loop in a greenlet of the main thread and, between
# two calls, leaves that loop marked as the thread's running loop (the loop is suspended
# mid-run, not stopped). An asyncio test after a browser test would then fail with
# "Runner.run() cannot be called from a running event loop". So the mark is set only while a
# browser test runs (the ``browser`` fixture) and cleared in between.


@pytest.fixture(scope="session")
def _chromium() -> Iterator[tuple[Any, asyncio.AbstractEventLoop]]:
    """One Chromium for the session, and Playwright's loop (not marked running)."""
    executable = need_binary("/usr/bin/chromium", "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        loop = asyncio.get_running_loop()
        asyncio._set_running_loop(None)
        try:
            yield b, loop
        finally:
            asyncio._set_running_loop(loop)  # Playwright resumes its loop to close
            b.close()


@pytest.fixture
def browser(_chromium: tuple[Any, asyncio.AbstractEventLoop]) -> Iterator[Any]:
    """The session's Chromium, usable for this test: Playwright's loop is marked running
    for the test's duration only (see above)."""
    b, loop = _chromium
    asyncio._set_running_loop(loop)
    try:
        yield b
    finally:
        asyncio._set_running_loop(None)


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    yield pg
    context.close()


def login(page: Any, email: str, password: str = LOGIN_PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/aliases")


def shoot(page: Any, name: str) -> None:
    """Screenshots at 1280 px and 375 px wide, full page, into test-artifacts/web/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        # Tall phone pages also in readable slices.
        height = page.evaluate("document.documentElement.scrollHeight")
        if width == 375 and height > 1400:
            for i, top in enumerate(range(0, height, 1000)):
                clip = {"x": 0, "y": top, "width": width, "height": min(1000, height - top)}
                page.screenshot(
                    path=str(ARTIFACTS / f"{name}-{width}-part{i + 1}.png"),
                    full_page=True,
                    clip=clip,
                )
    page.set_viewport_size(size)
