"""Email aliases, their IMAP accounts, and the database's own outgoing settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sendas.db.models.base import Base, UtcDateTime, utcnow


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
