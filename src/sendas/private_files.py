"""Files only the service's own user may read: the data folder (0700), the SQLite database
(0600; SQLite gives its -wal and -shm files the database's mode) and the key file.

Modes are set with chmod after creating, so the process umask cannot widen them."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) if needed; a folder created here is 0700.

    An existing folder keeps its mode: an administrator may have chosen it."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        return  # another process made it at the same moment
    os.chmod(path, DIR_MODE)


def private_file(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 unless it exists (then it is left alone)."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
