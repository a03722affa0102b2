"""OAuth applications and sign-ins in progress."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from sendas.db.models.base import Base, UtcDateTime, utcnow


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
