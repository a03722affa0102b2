"""What a recipient list offers before it is sent: its rows, merge fields and bad lines.

The form-letter page asks this while the user picks a file or pastes a list, so the counter
counts the file and the merge fields can be offered as buttons; the same parser reads the
list when the letter is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sendas.addresses import mailbox_key
from sendas.errors import ValidationFailed
from sendas.services.campaigns.recipients import BadRow, CsvRows

MAX_SHOWN = 20  # bad lines listed on the page; the rest are counted
LOOKUP_CHUNK = 500  # addresses per suppression-list lookup

# Which of these addresses (as given) are on the owner's suppression list (as mailbox keys).
SuppressedAmong = Callable[[list[str]], set[str]]


@dataclass
class ListSummary:
    headers: list[str] = field(default_factory=list)
    email_column: str | None = None
    needs_choice: bool = False
    fields: list[str] = field(default_factory=list)
    valid: int = 0
    invalid: int = 0
    bad: list[BadRow] = field(default_factory=list)
    problem: str | None = None
    suppressed: int = 0  # valid rows the owner's suppression list will skip


def summarize(rows: CsvRows, suppressed_among: SuppressedAmong | None = None) -> ListSummary:
    """Count a list's valid and bad rows and name its merge fields.

    A problem with the file as a whole (no address column, too large, not text) is returned
    in ``problem``, with the headers when they could be read, so the user can choose the
    address column; nothing is raised for it. With ``suppressed_among``, the valid rows on
    the owner's suppression list are counted in ``suppressed`` (one lookup per chunk).
    """
    out = ListSummary()
    try:
        layout = rows.file_layout()
        out.headers = layout.headers
        out.needs_choice = len(layout.email_candidates) != 1
        _, columns = rows.layout()
        out.email_column = layout.headers[columns.email_at]
        out.fields = columns.names
        chunk: list[str] = []
        for row in rows():
            if isinstance(row, BadRow):
                out.invalid += 1
                if len(out.bad) < MAX_SHOWN:
                    out.bad.append(row)
                continue
            out.valid += 1
            if suppressed_among is not None:
                chunk.append(row.email)
                if len(chunk) >= LOOKUP_CHUNK:
                    out.suppressed += _count(suppressed_among, chunk)
                    chunk = []
        if suppressed_among is not None and chunk:
            out.suppressed += _count(suppressed_among, chunk)
    except ValidationFailed as exc:
        out.problem = "; ".join(p.msg for p in exc.problems)
    return out


def _count(suppressed_among: SuppressedAmong, emails: list[str]) -> int:
    found = suppressed_among(emails)
    return sum(1 for e in emails if mailbox_key(e) in found) if found else 0
