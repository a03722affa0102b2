"""One watch round of one IMAP account's INBOX (blocking; run it in a worker thread).

Connect and log in (password or XOAUTH2, as the copy to Sent does), EXAMINE the INBOX, read
the messages above the last UID handled, at most ``max_messages`` per pass, and apply each
report. The last UID moves in the same transaction as the marks a message made, so a
restart never handles a message twice; a new UIDVALIDITY starts again from the first UID
(marking is idempotent). Where the server offers IDLE the round then waits up to
``idle_seconds`` for new mail and reads it; otherwise the next round comes after the poll
interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import BounceMailbox, utcnow
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.session import ImapSession
from sendas.outbox.bounces.apply import apply_report
from sendas.outbox.bounces.detect import read_report
from sendas.outbox.bounces.inbox import Inbox

log = logging.getLogger("sendas.outbox.bounces")

MAILBOX = "INBOX"


@dataclass(frozen=True)
class ScanLimits:
    """The bounds of one round (settings ``SENDAS_BOUNCE_*``)."""

    max_messages: int = 100
    max_message_bytes: int = 262_144
    idle_seconds: float = 0.0  # 0: no IDLE, one pass only


@dataclass
class RoundResult:
    """What a round did (logs and tests)."""

    read: int = 0
    bounces: int = 0
    auto_replies: int = 0
    bounced_messages: list[int] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    idled: bool = False


def mailbox_row(session: Session, account_id: int, mailbox: str = MAILBOX) -> BounceMailbox:
    """The account's row (created on first use), locked for update where supported."""
    row = session.scalar(
        select(BounceMailbox)
        .where(BounceMailbox.imap_account_id == account_id, BounceMailbox.mailbox == mailbox)
        .with_for_update()
    )
    if row is None:
        row = BounceMailbox(imap_account_id=account_id, mailbox=mailbox, last_uid=0)
        session.add(row)
        session.flush()
    return row


def scan_account(
    db: Database,
    endpoint: ImapEndpoint,
    account_id: int,
    user_id: int,
    limits: ScanLimits,
    *,
    stop: threading.Event | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> RoundResult:
    """One round over the account's INBOX (see the module docstring). Raises the
    :class:`~sendas.errors.TransportError` of a failed step; what was handled stays handled."""
    stop = stop or threading.Event()
    result = RoundResult()
    session = ImapSession(endpoint, loop=loop)
    try:
        session.connect()
        session.login()
        assert session.imap is not None
        inbox = Inbox(session.imap, MAILBOX)
        _start(db, account_id, inbox.examine())
        more = _pass(db, inbox, account_id, user_id, limits, result)
        idle_ok = "IDLE" in session.capabilities and limits.idle_seconds > 0
        if not more and idle_ok and not stop.is_set():
            result.idled = True
            if inbox.idle(limits.idle_seconds, stop):
                _pass(db, inbox, account_id, user_id, limits, result)
    finally:
        session.close()
    return result


def _start(db: Database, account_id: int, uidvalidity: int) -> None:
    """Record the mailbox's UIDVALIDITY; a new one means the UIDs handled mean nothing now."""
    with db.write() as s:
        row = mailbox_row(s, account_id)
        if row.uidvalidity != uidvalidity:
            if row.uidvalidity is not None:
                log.info("account %s: UIDVALIDITY changed, reading INBOX again", account_id)
            row.uidvalidity = uidvalidity
            row.last_uid = 0


def _pass(
    db: Database,
    inbox: Inbox,
    account_id: int,
    user_id: int,
    limits: ScanLimits,
    result: RoundResult,
) -> bool:
    """Handle up to ``max_messages`` new messages; True when more are waiting."""
    with db.read() as s:
        last_uid = s.scalar(
            select(BounceMailbox.last_uid).where(
                BounceMailbox.imap_account_id == account_id, BounceMailbox.mailbox == MAILBOX
            )
        )
    last_uid = last_uid or 0
    uids = inbox.uids_after(last_uid)
    for uid in uids[: limits.max_messages]:
        raw = inbox.fetch(uid, limits.max_message_bytes)
        report = read_report(raw) if raw else None
        with db.write() as s:
            row = mailbox_row(s, account_id)
            if row.uidvalidity != inbox.uidvalidity or row.last_uid >= uid:
                continue  # another round handled it meanwhile
            if report is not None:
                applied = apply_report(s, user_id, report, utcnow())
                result.bounced_messages += applied.bounced
                result.suppressed += applied.suppressed
            row.last_uid = uid
            row.scanned_at = utcnow()
        result.read += 1
        if report is not None and report.kind == "bounce":
            result.bounces += 1
        elif report is not None and report.kind == "auto-reply":
            result.auto_replies += 1
    return len(uids) > limits.max_messages
