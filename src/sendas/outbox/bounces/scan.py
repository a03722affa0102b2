"""One watch round of one IMAP account's INBOX (blocking; run it in a worker thread).

Connect and log in (password or XOAUTH2, as the copy to Sent does), EXAMINE the INBOX, read
the messages above the last UID handled, at most ``max_messages`` per pass, and apply each
report. The last UID moves in the same transaction as the marks a message made, so a
restart never handles a message twice. A mailbox seen for the first time, or under a new
UIDVALIDITY, is read from the messages received in the last ``lookback_days`` (older ones
cannot be bounces worth reading; marking is idempotent). A report naming one of ours whose
send is not recorded yet (``sending``) stops the pass before it, so the next round reads it
again, for up to ``pending_wait_seconds``; then it is handled as it stands. Where the server
offers IDLE the round then waits up to ``idle_seconds`` for new mail and reads it; otherwise
the next round comes after the poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.db.engine import Database
from sendas.db.models import BounceMailbox, utcnow
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.session import ImapSession
from sendas.outbox.bounces.apply import apply_report, unrecorded
from sendas.outbox.bounces.detect import Report, read_report
from sendas.outbox.bounces.inbox import Inbox

log = logging.getLogger("sendas.outbox.bounces")

MAILBOX = "INBOX"


@dataclass(frozen=True)
class ScanLimits:
    """The bounds of one round (settings ``SENDAS_BOUNCE_*``)."""

    max_messages: int = 100
    max_message_bytes: int = 262_144
    idle_seconds: float = 0.0  # 0: no IDLE, one pass only
    lookback_days: int = 7  # 0: a new mailbox is read from its first message
    pending_wait_seconds: float = 900.0


@dataclass
class Waits:
    """Since when (monotonic) a pass has stopped at a UID whose report names a message not
    recorded yet; kept by the watch across its rounds, so the wait is bounded."""

    since: dict[tuple[int, int, int], float] = field(default_factory=dict)

    def expired(self, key: tuple[int, int, int], limit: float) -> bool:
        now = time.monotonic()
        if len(self.since) > 10_000:  # stale keys of a UIDVALIDITY gone: forget them all
            self.since.clear()
        return now - self.since.setdefault(key, now) >= limit

    def done(self, key: tuple[int, int, int]) -> None:
        self.since.pop(key, None)


@dataclass
class RoundResult:
    """What a round did (logs and tests)."""

    read: int = 0
    bounces: int = 0
    auto_replies: int = 0
    bounced_messages: list[int] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    idled: bool = False
    waiting: int | None = None  # the UID a pass stopped at (its message not recorded yet)


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
    waits: Waits | None = None,
) -> RoundResult:
    """One round over the account's INBOX (see the module docstring). Raises the
    :class:`~sendas.errors.TransportError` of a failed step; what was handled stays handled."""
    stop = stop or threading.Event()
    waits = waits if waits is not None else Waits()
    result = RoundResult()
    session = ImapSession(endpoint, loop=loop)
    try:
        session.connect()
        session.login()
        assert session.imap is not None
        inbox = Inbox(session.imap, MAILBOX)
        _start(db, inbox, account_id, limits.lookback_days)
        scan = _Pass(db, inbox, account_id, user_id, limits, result, waits)
        more = scan.run()
        idle_ok = "IDLE" in session.capabilities and limits.idle_seconds > 0
        # A pass held at a bounce waiting for its record: no IDLE, the next round retries it.
        if not more and result.waiting is None and idle_ok and not stop.is_set():
            result.idled = True
            if inbox.idle(limits.idle_seconds, stop):
                scan.run()
    finally:
        session.close()
    return result


def _start(db: Database, inbox: Inbox, account_id: int, lookback_days: int) -> None:
    """Record the mailbox's UIDVALIDITY; under a new one (or the first time) the UIDs handled
    mean nothing, and the pass starts at the messages received in the last days."""
    uidvalidity = inbox.examine()
    with db.read() as s:
        known = s.scalar(
            select(BounceMailbox.uidvalidity).where(
                BounceMailbox.imap_account_id == account_id, BounceMailbox.mailbox == MAILBOX
            )
        )
    if known == uidvalidity:
        return
    start = 0
    if lookback_days > 0:
        start = inbox.start_since((utcnow() - timedelta(days=lookback_days)).date())
    with db.write() as s:
        row = mailbox_row(s, account_id)
        if row.uidvalidity != uidvalidity:
            if row.uidvalidity is not None:
                log.info("account %s: UIDVALIDITY changed, reading INBOX again", account_id)
            row.uidvalidity = uidvalidity
            row.last_uid = start


@dataclass
class _Pass:
    db: Database
    inbox: Inbox
    account_id: int
    user_id: int
    limits: ScanLimits
    result: RoundResult
    waits: Waits

    def run(self) -> bool:
        """Handle up to ``max_messages`` new messages; True when more are waiting (False
        too when the pass stopped at a report whose message is not recorded yet)."""
        with self.db.read() as s:
            last_uid = s.scalar(
                select(BounceMailbox.last_uid).where(
                    BounceMailbox.imap_account_id == self.account_id,
                    BounceMailbox.mailbox == MAILBOX,
                )
            )
        uids = self.inbox.uids_after(last_uid or 0)
        for uid in uids[: self.limits.max_messages]:
            raw = self.inbox.fetch(uid, self.limits.max_message_bytes)
            report = read_report(raw) if raw else None
            if not self._handle(uid, report):
                self.result.waiting = uid
                return False
        return len(uids) > self.limits.max_messages

    def _handle(self, uid: int, report: Report | None) -> bool:
        """Apply the report of message ``uid`` and move the last UID past it; False (nothing
        done) when it must wait for a send to be recorded."""
        key = (self.account_id, self.inbox.uidvalidity, uid)
        with self.db.write() as s:
            row = mailbox_row(s, self.account_id)
            if row.uidvalidity != self.inbox.uidvalidity or row.last_uid >= uid:
                return True  # another round handled it meanwhile
            if report is not None and self._must_wait(s, report, key):
                return False
            if report is not None:
                applied = apply_report(s, self.user_id, report, utcnow())
                self.result.bounced_messages += applied.bounced
                self.result.suppressed += applied.suppressed
            row.last_uid = uid
            row.scanned_at = utcnow()
        self.waits.done(key)
        self.result.read += 1
        if report is not None and report.kind == "bounce":
            self.result.bounces += 1
        elif report is not None and report.kind == "auto-reply":
            self.result.auto_replies += 1
        return True

    def _must_wait(self, s: Session, report: Report, key: tuple[int, int, int]) -> bool:
        pending = unrecorded(s, self.user_id, report)
        if not pending:
            return False
        if self.waits.expired(key, self.limits.pending_wait_seconds):
            log.warning(
                "account %s: UID %s names message(s) %s still sending after %.0f s: "
                "handled as they stand", self.account_id, key[2], pending,
                self.limits.pending_wait_seconds,
            )  # fmt: skip
            return False
        return True
