"""ORM models. Secret columns end in ``_enc`` and hold Fernet tokens, never plaintext."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="user")  # "admin" | "user"
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # A disabled user cannot log in or use a token; their queued mail waits (lanes paused).
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class WebSession(Base):
    """A signed-in browser. The cookie carries a random id; only its SHA-256 is stored, so
    deleting the row ends the session at once (log out, password change, disabled user)."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)

    user: Mapped[User] = relationship(lazy="joined")


class ImapAccount(Base):
    __tablename__ = "imap_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    imap_host: Mapped[str] = mapped_column(String(255))
    imap_port: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(320))
    password_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    tls: Mapped[str] = mapped_column(String(16), default="auto")
    sent_folder: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ca_bundle: Mapped[str | None] = mapped_column(Text, nullable=True)
    allow_plaintext_auth: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sa_false()
    )
    last_test: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Does the mail server file its own copy of accepted mail in Sent? None: not known yet;
    # learnt after a send (our Message-ID found there before our copy).
    files_sent_copy: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class SmtpColumns:
    """The SMTP account fields shared by aliases and the database outgoing settings."""

    smtp_host: Mapped[str] = mapped_column(String(255), default="")
    smtp_port: Mapped[int] = mapped_column(Integer, default=587)
    smtp_username: Mapped[str] = mapped_column(String(320), default="")
    smtp_password_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    tls: Mapped[str] = mapped_column(String(16), default="auto")
    allow_plaintext_auth: Mapped[bool] = mapped_column(Boolean, default=False)
    ca_bundle: Mapped[str | None] = mapped_column(Text, nullable=True)


class Alias(SmtpColumns, Base):
    __tablename__ = "aliases"
    __table_args__ = (
        UniqueConstraint("user_id", "description_key", name="uq_aliases_user_description"),
        # At most one default per user, enforced by the database as a safety net.
        Index(
            "uq_aliases_one_default",
            "user_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(String(200))
    description_key: Mapped[str] = mapped_column(String(200))  # casefolded, for uniqueness
    alias_name: Mapped[str] = mapped_column(String(200), default="")
    from_address: Mapped[str] = mapped_column(String(320), default="")
    reply_to: Mapped[str | None] = mapped_column(String(320), nullable=True)
    imap_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("imap_accounts.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    delay_ms: Mapped[int] = mapped_column(Integer, default=0)
    # SMTP connections its lane may use at once (only without a delay; relays, not mailboxes).
    max_connections: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    auth: Mapped[str] = mapped_column(String(16), default="password")
    oauth_token_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    needs_reauth: Mapped[bool] = mapped_column(Boolean, default=False)
    last_test: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    # The servers the sign-in's tokens may go to (oauth.providers.BoundServers), set at sign-in.
    oauth_servers: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    imap_account: Mapped[ImapAccount | None] = relationship(lazy="joined")


class SystemOutgoing(SmtpColumns, Base):
    """The database's own outgoing settings (one row, id 1) for automated mail."""

    __tablename__ = "system_outgoing"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_address: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    reply_to: Mapped[str | None] = mapped_column(String(320), nullable=True)
    delay_ms: Mapped[int] = mapped_column(Integer, default=0)
    last_test: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    max_connections: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class OAuthClient(Base):
    """An OAuth application registered by the admin (Google or Microsoft)."""

    __tablename__ = "oauth_clients"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(500))
    client_secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    tenant: Mapped[str | None] = mapped_column(String(200), nullable=True)
    discovery_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # host:port overrides of the provider's servers (national clouds, gateways, tests).
    smtp_server: Mapped[str | None] = mapped_column(String(300), nullable=True)
    imap_server: Mapped[str | None] = mapped_column(String(300), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class PendingSignIn(Base):
    """A started "Sign in with Google/Microsoft", kept until its callback and used once.

    Found by the SHA-256 of its ``state`` (the state itself is never stored); the PKCE
    verifier and the nonce are encrypted. ``alias_id`` is None for a new alias.
    """

    __tablename__ = "oauth_pending_sign_ins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    alias_id: Mapped[int | None] = mapped_column(
        ForeignKey("aliases.id", ondelete="CASCADE"), nullable=True
    )
    provider: Mapped[str] = mapped_column(String(16))
    code_verifier_enc: Mapped[str] = mapped_column(Text)
    nonce_enc: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(String(1000))
    imap: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Campaign(Base):
    """A form letter: templates plus one message per recipient."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    alias_id: Mapped[int] = mapped_column(ForeignKey("aliases.id", ondelete="CASCADE"), index=True)
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


class Message(Base):
    """One submission: a single email, one recipient of a form letter, or automated mail.

    The composed bytes and a form letter's values live in :class:`MessageBody` (written
    once), so that the many status updates of this row stay small.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_claim", "status", "lane", "next_attempt_at"),
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
        return self.body.raw if self.body is not None else None

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
    # The exact bytes submitted, so the copy to Sent matches what was sent.
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
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


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RateEvent(Base):
    """One use of a rate-limited action (a Test Connection) by a user, kept for its window.

    In the database, so every ``sendas serve`` process counts the same uses.
    """

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_user_kind_at", "user_id", "kind", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


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


class Suppression(Base):
    """An address a user's mail must not go to any more: added when a message to it
    bounced hard (``reason`` holds the status code and diagnostic), or by the user; a
    later form letter skips it. The user may remove it."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("user_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Lower case (sendas.services.suppressions normalises it): one entry per mailbox.
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
