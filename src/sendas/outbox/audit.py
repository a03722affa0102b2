"""Audit events the outbox writes itself: a server refused the sign-in of a send or of the
copy to Sent. The detail names the server, never a secret."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.db.models import Alias, AuditEvent, Message, SystemOutgoing
from sendas.net import host_port


def login_refused(
    session: Session,
    row: Alias | SystemOutgoing,
    *,
    during: str,
    step: str = "auth",
) -> None:
    """Record that the SMTP server of an alias (or of the database outgoing settings)
    refused its sign-in. No user acted: the worker did."""
    is_alias = isinstance(row, Alias)
    session.add(
        AuditEvent(
            actor_id=None,
            owner_id=row.user_id if isinstance(row, Alias) else None,
            action="alias.auth_failed" if is_alias else "system_outgoing.auth_failed",
            target_type="alias" if is_alias else "system_outgoing",
            target_id=row.id,
            detail={
                "server": host_port(row.smtp_host, row.smtp_port),
                "during": during,
                "step": step,
            },
        )
    )


def sent_copy_login_refused(session: Session, message_id: int, host: str, port: int) -> None:
    """Record that the IMAP server refused the login of a copy to Sent."""
    message = session.get(Message, message_id)
    alias = session.get(Alias, message.alias_id) if message and message.alias_id else None
    if alias is None:
        return
    session.add(
        AuditEvent(
            actor_id=None,
            owner_id=alias.user_id,
            action="imap.auth_failed",
            target_type="imap_account",
            target_id=alias.imap_account_id,
            detail={"server": host_port(host, port), "during": "copy to Sent", "step": "login"},
        )
    )


def sent_copy_unrecorded(session: Session, message_id: int) -> bool:
    """Whether the outcome of ``message_id``'s copy to Sent is not stored yet. Asked before
    storing it: a record run again after a commit whose answer was lost (the write queue
    retries a lost connection) finds it stored, and writes no second audit row."""
    stored = session.scalar(select(Message.sent_copy).where(Message.id == message_id))
    return stored is None
