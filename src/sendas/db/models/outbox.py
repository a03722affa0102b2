"""The outbox: form letters, messages (status rows apart from their bodies), lanes,
per-letter counts and the live workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from sendas.db.models.base import Base, UtcDateTime, utcnow
from sendas.db.packing import (
    LetterPacked,
    PackedBytes,
    letter_dictionary,
    unpack_letter,
)


class Campaign(Base):
    """A form letter: templates plus one message per recipient."""

    __tablename__ = "campaigns"
    __table_args__ = (
        # An alias's running letters, found at every poll and claim of its lane without
        # reading its finished ones (and its letters, for deleting it).
        Index("ix_campaigns_alias_status", "alias_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    alias_id: Mapped[int] = mapped_column(ForeignKey("aliases.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(Text)
    text_template: Mapped[str | None] = mapped_column(Text, nullable=True)
    html_template: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    paused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Recipients left out because they are on the owner's suppression list (migration
    # 0015): {"count": n, "addresses": the first ones}; NULL, none. JSON, so that code
    # written against an older schema still inserts letters (the ORM leaves it out).
    suppressed_skips: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    @property
    def body_dictionary(self) -> bytes:
        """What its messages' bodies are packed with (``sendas.db.packing``)."""
        return letter_dictionary(self.subject, self.text_template, self.html_template)


class Message(Base):
    """One submission: a single email, one recipient of a form letter, or automated mail.

    The composed bytes and a form letter's values live in :class:`MessageBody` (written
    once), so that the many status updates of this row stay small.
    """

    __tablename__ = "messages"
    __table_args__ = (
        # A lane's ready messages per source (its single messages, each form letter), in
        # the order they are due: a paused letter's are never read (outbox.claims, lanes).
        Index("ix_messages_claim", "status", "lane", "campaign_id", "next_attempt_at"),
        Index("ix_messages_user_created", "user_id", "created_at"),
        # The per-user cap on messages waiting (sendas.services.quotas) counts by status.
        Index("ix_messages_user_status", "user_id", "status"),
        # A bounce names the message it returns by Message-ID (sendas.outbox.bounces.apply).
        Index("ix_messages_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    alias_id: Mapped[int | None] = mapped_column(
        ForeignKey("aliases.id", ondelete="SET NULL"), nullable=True, index=True
    )
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # "alias:<id>" or "system": the pacing lane this message is sent through.
    lane: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="single")  # single|campaign|system
    status: Mapped[str] = mapped_column(String(16), default="queued")
    envelope_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    to_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    bcc_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(500), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    server_reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_step: Mapped[str | None] = mapped_column(String(32), nullable=True)
    hint: Mapped[str | None] = mapped_column(Text, nullable=True)
    recipient_results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    sent_copy: Mapped[str | None] = mapped_column(String(16), nullable=True)
    sent_copy_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Loaded when read (one SELECT by key): lists of messages never touch the bodies.
    body: Mapped[MessageBody | None] = relationship(
        lazy="select", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def raw(self) -> bytes | None:
        """The exact bytes submitted (None: a form letter's message not rendered yet)."""
        raw = self.body.raw if self.body is not None else None
        if isinstance(raw, LetterPacked):  # packed with its letter's templates
            session = object_session(self)
            campaign = session.get(Campaign, self.campaign_id) if session else None
            if campaign is None:
                raise ValueError(f"message {self.id}: its body needs its form letter to be read")
            raw = unpack_letter(raw, campaign.body_dictionary)
        return raw

    @property
    def merge_fields(self) -> dict[str, Any] | None:
        """A form letter's recipient values (None for other messages)."""
        return self.body.merge_fields if self.body is not None else None


class MessageBody(Base):
    """A message's bytes and a form letter's values, apart from its status row.

    Written once: at enqueue (a single email's composed bytes, a form letter's values),
    and a form letter's ``raw`` when it is rendered, as it is first sent. Claiming, marking
    and recording outcomes update ``messages`` only, never this ~5 KB row.
    """

    __tablename__ = "message_bodies"

    message_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    )
    # The exact bytes submitted, so the copy to Sent matches what was sent; packed at rest
    # (sendas.db.packing), read and written as the plain bytes.
    raw: Mapped[bytes | None] = mapped_column(PackedBytes, nullable=True)
    # A form letter's recipient values; the message is rendered and composed when first sent.
    merge_fields: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Lane(Base):
    """Pacing and pause state of one sending lane (an alias, or the system settings)."""

    __tablename__ = "lanes"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_send_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    paused_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    paused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    needs_attention: Mapped[bool] = mapped_column(Boolean, default=False)
    # The worker driving this lane (one SMTP connection per alias across all workers), and
    # until when its claim holds unless renewed; a dead worker's lane is free after that.
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    owner_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class CampaignCount(Base):
    """How many of a form letter's messages are in each status, kept by the outbox in the
    transaction of every status change (``sendas.outbox.counts``), so progress reads a few
    rows instead of counting the messages. The ``sent`` row also keeps two marks of its
    count (``mark_*``: older, ``recent_*``: newer, rolled every half minute) for the rate."""

    __tablename__ = "campaign_counts"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)
    mark_n: Mapped[int] = mapped_column(Integer, default=0)
    mark_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    recent_n: Mapped[int] = mapped_column(Integer, default=0)
    recent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class LiveWorker(Base):
    """An outbox worker that announced itself: written by its heartbeat at every beat,
    deleted when it stops cleanly. A row past ``expires_at`` is a dead worker (ignored,
    swept now and then). Workers count the live ones to take their share of the lanes."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
