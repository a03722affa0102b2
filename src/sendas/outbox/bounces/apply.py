"""Mark the messages a bounce returns: per recipient, the message, the form letter's counts,
and the suppression list for hard bounces. Idempotent: the same report applied twice
changes nothing the second time.

Rules (a message has one recipient for a form letter, several for a single email):

* only the owner's messages are looked at (the IMAP account's user), and only those already
  handed to a server (``sent``, ``unknown``, or ``bounced`` again);
* each failed recipient the report names gets ``recipient_results[address]`` =
  ``{"status": "bounced", "status_code", "reply", "permanent"}``; a ``delayed`` warning is
  recorded as ``"delayed"`` and changes no status;
* a message whose only recipient is not named (forwarding rewrote the address) but whose
  report names exactly one failed address takes that failure;
* the message becomes ``bounced`` when none of its recipients is left delivered (each one
  bounced, or refused when it was sent); a single email with one of three recipients bounced
  stays ``sent``, with that recipient marked;
* a hard bounce (status 5.x.x) puts the address on the owner's suppression list; a soft one
  (4.x.x: the server gave up on a temporary failure) marks the message only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.addresses import mailbox_key
from sendas.db.models import Message
from sendas.outbox.bounces.detect import Failure, Report
from sendas.outbox.bounces.suppress import suppress_bounced
from sendas.outbox.counts import Moves
from sendas.outbox.tables import unindexed
from sendas.statuses import MessageStatus

HANDED_OVER = (MessageStatus.SENT, MessageStatus.UNKNOWN, MessageStatus.BOUNCED)
# A message on the wire whose outcome is not committed yet (the window's group commit, a
# paced record, a record that failed and is retried): its bounce waits for the record.
# ``queued``/``retrying`` are not waited for: nothing of theirs is out, or a retry may be
# hours away (longer than any wait worth holding the INBOX for).
UNRECORDED = (MessageStatus.SENDING,)
HARD_HINT = (
    "The recipient's server returned this message as undeliverable (a permanent failure): "
    "the address is on your suppression list, so form letters skip it. Check the address."
)
SOFT_HINT = (
    "The recipient's server gave up delivering this message after a temporary failure (a "
    "full mailbox, a server down): sending again later may work."
)


@dataclass
class Applied:
    """What one report changed (for logs and tests)."""

    bounced: list[int] = field(default_factory=list)
    recipients: int = 0
    suppressed: list[str] = field(default_factory=list)


def apply_report(session: Session, user_id: int, report: Report, now: datetime) -> Applied:
    """Apply ``report`` to ``user_id``'s messages it names (see the module's rules)."""
    done = Applied()
    if report.kind != "bounce" or not report.message_ids:
        return done
    messages = session.scalars(
        select(Message).where(
            # Found by Message-ID: the user's other messages are never read (tables.unindexed).
            Message.message_id.in_(report.message_ids),
            unindexed(Message.user_id) == user_id,
            unindexed(Message.status).in_(HANDED_OVER),
        )
    ).all()
    moves = Moves()
    for m in messages:
        matched = _match(list(m.recipients), report.failures)
        if not matched:
            continue
        results: dict[str, Any] = dict(m.recipient_results or {})
        changed = False
        for recipient, failure in matched.items():
            changed |= _record(results, recipient, failure)
            if failure.action == "failed":
                done.recipients += 1
                if failure.permanent and suppress_bounced(
                    session, user_id, recipient, failure.summary, m.id, now
                ):
                    done.suppressed.append(mailbox_key(recipient))
        if changed:
            m.recipient_results = results
        if m.status != MessageStatus.BOUNCED and _all_failed(m.recipients, results):
            moves.move(m.campaign_id, m.status, MessageStatus.BOUNCED)
            _mark_bounced(m, matched, now)
            done.bounced.append(m.id)
    moves.apply(session, now)
    return done


def unrecorded(session: Session, user_id: int, report: Report) -> list[int]:
    """The ids of ``user_id``'s messages ``report`` returns whose send is not recorded yet."""
    if report.kind != "bounce" or not report.message_ids:
        return []
    return list(
        session.scalars(
            select(Message.id).where(
                Message.message_id.in_(report.message_ids),
                unindexed(Message.user_id) == user_id,
                unindexed(Message.status).in_(UNRECORDED),
            )
        ).all()
    )


def _match(recipients: list[str], failures: tuple[Failure, ...]) -> dict[str, Failure]:
    # A report may spell an IDN domain in punycode where the message used Unicode, or back.
    by_address = {mailbox_key(f.address): f for f in failures}
    matched = {r: by_address[k] for r in recipients if (k := mailbox_key(r)) in by_address}
    failed = [f for f in failures if f.action == "failed"]
    if not matched and len(recipients) == 1 and len({f.address for f in failed}) == 1:
        matched = {recipients[0]: failed[0]}
    return matched


def _record(results: dict[str, Any], recipient: str, failure: Failure) -> bool:
    """Write the recipient's entry; a ``delayed`` warning never replaces a bounce."""
    old = results.get(recipient)
    if failure.action == "delayed" and isinstance(old, dict) and old.get("status") == "bounced":
        return False
    entry: dict[str, Any] = {
        "status": "bounced" if failure.action == "failed" else "delayed",
        "status_code": failure.status,
        "reply": failure.diagnostic,
        "permanent": failure.permanent,
    }
    if old == entry:
        return False
    results[recipient] = entry
    return True


def _all_failed(recipients: list[str], results: dict[str, Any]) -> bool:
    states = [(results.get(r) or {}).get("status") for r in recipients]
    return "bounced" in states and all(s in ("bounced", MessageStatus.FAILED) for s in states)


def _mark_bounced(m: Message, matched: dict[str, Failure], now: datetime) -> None:
    failures = [f for f in matched.values() if f.action == "failed"]
    m.status = MessageStatus.BOUNCED
    m.error_step = "bounce"
    m.server_reply = "; ".join(dict.fromkeys(f"{r}: {f.summary}" for r, f in matched.items()))
    m.hint = HARD_HINT if any(f.permanent for f in failures) else SOFT_HINT
    m.updated_at = now
