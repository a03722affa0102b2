"""A private PostgreSQL server for the test session, and a fresh database per test.

``postgres_server`` (session) starts ``postgres`` from the system's binaries in a temporary
directory, listening only on 127.0.0.1 on a port chosen at run time, and stops it at the end.
With ``SENDAS_TEST_POSTGRES_URL`` set, that server is used instead and nothing is started.
``postgres_url`` (function) creates an empty database for one test and drops it afterwards.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
``postgres`` OS user (``runuser``), in a directory handed over to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from tests.servers.need import missing
from tests.servers.process import free_port

ENV_URL = "SENDAS_TEST_POSTGRES_URL"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PgBinaries:
    initdb: str
    pg_ctl: str


def find_binaries() -> PgBinaries | None:
    """The newest installed PostgreSQL's ``initdb`` and ``pg_ctl``, or ``None``."""

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parts[-3]  # /usr/lib/postgresql/<version>/bin/initdb
        return tuple(int(x) for x in part.split(".") if x.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    for initdb in candidates:
        pg_ctl = str(Path(initdb).with_name("pg_ctl"))
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return PgBinaries(initdb, pg_ctl)
    initdb_on_path, pg_ctl_on_path = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb_on_path and pg_ctl_on_path:
        return PgBinaries(initdb_on_path, pg_ctl_on_path)
    return None


def sqlalchemy_url(url: str) -> URL:
    """Accept ``postgresql://`` or ``postgresql+psycopg://``; always use psycopg 3."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


def libpq_conninfo(url: URL) -> str:
    """The same URL in the form psycopg.connect() takes."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PrivatePostgres:
    """One throw-away cluster: ``initdb``, ``pg_ctl start``, ``pg_ctl stop``."""

    def __init__(self, binaries: PgBinaries) -> None:
        self.binaries = binaries
        # Not pytest's tmp_path: its parents are 0700 root, which the postgres user cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="sendas-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self.port = 0
        self.run_as: str | None = SUPERUSER if os.geteuid() == 0 else None

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, *args]

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self) -> URL:
        self.sockets.mkdir()
        if self.run_as:
            try:
                owner = pwd.getpwnam(self.run_as)
            except KeyError:
                missing(f"the '{self.run_as}' OS user to run PostgreSQL as (we are root)")
            for path in (self.root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run(
            self.binaries.initdb,
            "-D", str(self.data),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.sockets}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=32MB",
            ]
        )
        # A port picked here may be taken before postgres binds it; try a few.
        for _attempt in range(5):
            self.port = free_port()
            try:
                self._run(
                    self.binaries.pg_ctl,
                    "start", "-w", "-t", "60",
                    "-D", str(self.data),
                    "-l", str(self.log),
                    "-o", f"{options} -p {self.port}",
                )  # fmt: skip
                break
            except RuntimeError:
                if "could not bind" not in self._log_tail():
                    raise
        else:
            raise RuntimeError(f"PostgreSQL found no free port:\n{self._log_tail()}")
        return URL.create(
            "postgresql+psycopg",
            username=SUPERUSER,
            host="127.0.0.1",
            port=self.port,
            database="postgres",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._cmd(self.binaries.pg_ctl, "stop", "-m", "immediate", "-D", str(self.data)),
                capture_output=True,
                timeout=60,
                cwd=self.root,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the server is marked ``postgres`` (select with ``-m``)."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Admin URL (``postgresql+psycopg://...``, a superuser) of a running PostgreSQL server."""
    external = os.environ.get(ENV_URL)
    if external:
        yield sqlalchemy_url(external).render_as_string(hide_password=False)
        return
    binaries = find_binaries()
    if binaries is None:
        missing("PostgreSQL server binaries (apt-get install postgresql)")
    server = PrivatePostgres(binaries)
    try:
        url = server.start()
        yield url.render_as_string(hide_password=False)
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """URL (``postgresql+psycopg://...``) of a new, empty database, dropped after the test."""
    admin = make_url(postgres_server)
    name = f"sendas_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(libpq_conninfo(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_conninfo(admin), autocommit=True) as conn:
            # FORCE ends sessions a test left open (an undisposed engine's pool).
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
