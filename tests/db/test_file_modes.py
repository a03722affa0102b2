"""The data folder, the database and its -wal/-shm files and the key file are private
(0700 / 0600) whatever the umask (issue 11, item 7)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from sendas.config import Settings
from sendas.context import AppContext


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o000)  # the widest: every mode below comes from sendas itself
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_everything_the_service_creates_is_private(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "data"
    ctx = AppContext.build(Settings(data_dir=data, embedded_worker=False))
    try:
        with ctx.db.write() as s:  # a write: the -wal and -shm files exist now
            s.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            s.execute(text("INSERT INTO t VALUES (1)"))
        ctx.secrets.encrypt("x")  # the key file is made on first use
        db = data / "sendas.db"
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), ctx.settings.key_file]
        assert {p.name: oct(mode(p)) for p in files} == {p.name: "0o600" for p in files}
        assert oct(mode(data)) == "0o700"
    finally:
        ctx.close()
