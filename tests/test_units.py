"""The one wording for byte counts (file sizes on pages, limits in errors)."""

from __future__ import annotations

import pytest

from sendas.units import byte_size


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (812, "812 bytes"),
        (1023, "1023 bytes"),
        (1024, "1 KB"),
        (8 * 1024, "8 KB"),
        (14_541, "14.2 KB"),
        (100_000, "97.7 KB"),
        (1024 * 1024 - 1, "1 MB"),  # not "1024 KB"
        (1024 * 1024, "1 MB"),
        (3_250_586, "3.1 MB"),
        (25 * 1024 * 1024, "25 MB"),
        (40 * 1024 * 1024, "40 MB"),
        (5 * 1024**3, "5120 MB"),
    ],
)
def test_byte_size(size: int, shown: str) -> None:
    assert byte_size(size) == shown
