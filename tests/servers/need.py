"""Skip locally, fail under CI, when a real server a test needs is missing."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """Under ``CI=true`` a missing server is a failure, never a silent skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required for this test but missing: {what}", pytrace=False)
    pytest.skip(f"missing: {what}")


def need_binary(*candidates: str) -> str:
    """Return the first of ``candidates`` found on PATH or as an absolute path."""
    for name in candidates:
        if os.path.isabs(name) and os.access(name, os.X_OK):
            return name
        found = shutil.which(name)
        if found:
            return found
    missing(" or ".join(candidates))
