"""Suppressed addresses and the bounce scanner's place in each mailbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from sendas.db.models.base import Base, UtcDateTime, utcnow


class Suppression(Base):
    """An address a user's mail must not go to any more: added when a message to it
    bounced hard (``reason`` holds the status code and diagnostic), or by the user; a
    later form letter skips it. The user may remove it."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("user_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Lower case, Unicode domain (sendas.addresses.mailbox_key): one entry per mailbox.
    address: Mapped[str] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(16), default="bounce")  # bounce | manual
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class BounceMailbox(Base):
    """What the bounce scanner handled in one mailbox of an IMAP account: the UIDs up to
    ``last_uid`` under ``uidvalidity`` (a new UIDVALIDITY starts over; marking is idempotent),
    and which worker watches it until when (one connection per account)."""

    __tablename__ = "bounce_mailboxes"
    __table_args__ = (UniqueConstraint("imap_account_id", "mailbox"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    imap_account_id: Mapped[int] = mapped_column(ForeignKey("imap_accounts.id", ondelete="CASCADE"))
    mailbox: Mapped[str] = mapped_column(String(255))
    # IMAP UIDs and UIDVALIDITY are 32-bit unsigned: past INTEGER's range on PostgreSQL.
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    scanned_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
