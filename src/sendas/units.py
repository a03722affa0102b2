"""Byte counts as people read them, one wording for every page, reply and error."""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB


def byte_size(size: int) -> str:
    """``size`` bytes in binary units, to at most one decimal: ``812 bytes``, ``14.2 KB``,
    ``25 MB``. Megabytes are the largest unit (every size and limit sendas shows is below
    a gigabyte or reads well in MB)."""
    if size < KIB:
        return f"{size} byte{'' if size == 1 else 's'}"
    amount, unit = round(size / KIB, 1), "KB"
    if amount >= KIB:  # 1023.96 KB would round to "1024 KB"
        amount, unit = round(size / MIB, 1), "MB"
    return f"{amount:.1f}".removesuffix(".0") + f" {unit}"
