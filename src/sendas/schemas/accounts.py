"""Users and API tokens, email aliases, IMAP accounts, the database outgoing settings and the
audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    field_validator,
)

from sendas.schemas.fields import (
    AuthMethod,
    DelayMs,
    Email,
    HeaderName,
    HeaderText,
    MaxConnections,
    ObjectId,
    Password,
    PemText,
    Role,
    ServerText,
    ShortText,
    Strict,
    TlsMode,
)
from sendas.schemas.results import StoredTestResult

# --- users and tokens ---------------------------------------------------------------------


NewPassword = Annotated[SecretStr, Field(min_length=8, max_length=1000)]


class UserCreate(Strict):
    email: Email
    name: ShortText = Field(min_length=1)
    role: Role = "user"
    password: NewPassword | None = None


class UserPatch(Strict):
    """What an admin changes on a user; absent fields stay. ``password`` resets it (and
    ends the user's sessions)."""

    disabled: bool | None = None
    role: Role | None = None
    password: NewPassword | None = None


class PasswordChange(Strict):
    current_password: Annotated[SecretStr, Field(max_length=1000)]
    new_password: NewPassword


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    disabled: bool = False
    created_at: datetime


class TokenCreate(Strict):
    name: ShortText = ""
    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _future(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        if v.tzinfo is None:
            raise ValueError("must include a time zone (e.g. 2030-01-31T12:00:00Z)")
        if v <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return v.astimezone(UTC)


class TokenInfo(BaseModel):
    """A token as listed: never the token itself."""

    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class TokenOut(TokenInfo):
    token: str  # shown once, at creation


# --- aliases ------------------------------------------------------------------------------


class SmtpFields(Strict):
    smtp_server: ServerText | None = None
    smtp_username: HeaderText | None = None
    smtp_password: Password | None = None
    tls: TlsMode | None = None
    allow_plaintext_auth: bool | None = None
    ca_bundle: PemText | None = None

    @field_validator("ca_bundle")
    @classmethod
    def _pem(cls, v: str | None) -> str | None:
        if v is not None and v.strip() and "-----BEGIN CERTIFICATE-----" not in v:
            raise ValueError("must be PEM text containing at least one certificate")
        return v.strip() or None if v is not None else None


class AliasPatch(SmtpFields):
    """Every field optional: absent keeps the stored value (``smtp_password`` too)."""

    description: ShortText | None = None
    alias_name: HeaderName | None = None
    from_address: Email | None = None
    reply_to: Email | None = None
    imap_account_id: ObjectId | None = None
    is_default: bool | None = None
    delay_ms: DelayMs | None = None
    max_connections: MaxConnections | None = None
    auth: AuthMethod | None = None


class AliasTestIn(AliasPatch):
    """Unsaved Edit Alias settings to test; with ``alias_id``, left-out fields (the password
    too) come from that saved alias."""

    alias_id: ObjectId | None = None


class AliasCreate(AliasPatch):
    description: ShortText = Field(min_length=1)


class AliasOut(BaseModel):
    id: int
    user_id: int
    description: str
    alias_name: str
    from_address: str
    reply_to: str | None
    smtp_server: str
    smtp_username: str
    tls: TlsMode
    allow_plaintext_auth: bool
    ca_bundle_set: bool
    imap_account_id: int | None
    is_default: bool
    delay_ms: int
    max_connections: int
    auth: AuthMethod
    password_set: bool
    needs_reauth: bool
    last_test: StoredTestResult
    warnings: list[str] = []
    created_at: datetime
    updated_at: datetime


# --- IMAP accounts --------------------------------------------------------------------------


class ImapPatch(Strict):
    description: ShortText | None = None
    imap_server: ServerText | None = None
    username: HeaderText | None = None
    password: Password | None = None
    tls: TlsMode | None = None
    sent_folder: ShortText | None = None
    ca_bundle: PemText | None = None
    allow_plaintext_auth: bool | None = None


class ImapCreate(ImapPatch):
    imap_server: ServerText
    username: HeaderText = Field(min_length=1)


class ImapOut(BaseModel):
    id: int
    user_id: int
    description: str
    imap_server: str
    username: str
    tls: TlsMode
    sent_folder: str | None
    allow_plaintext_auth: bool
    password_set: bool
    last_test: StoredTestResult
    created_at: datetime
    # Learnt by the outbox after a send (None: not known yet); read-only.
    files_sent_copy: bool | None = None


# --- database outgoing settings ------------------------------------------------------------


class SystemOutgoingIn(SmtpFields):
    from_address: Email | None = None
    from_name: HeaderName | None = None
    reply_to: Email | None = None
    delay_ms: DelayMs | None = None
    max_connections: MaxConnections | None = None


class SystemOutgoingTest(SystemOutgoingIn):
    """``POST /api/system/outgoing/test``: unsaved changes to test, and with ``to`` a real
    test message sent to that address instead of stopping at ``RCPT TO``."""

    to: Email | None = None


class SystemOutgoingOut(BaseModel):
    from_address: str
    from_name: str
    reply_to: str | None
    smtp_server: str
    smtp_username: str
    tls: TlsMode
    allow_plaintext_auth: bool
    ca_bundle_set: bool
    delay_ms: int
    max_connections: int
    password_set: bool
    configured: bool
    last_test: StoredTestResult
    warnings: list[str] = []
    updated_at: datetime


class AuditOut(BaseModel):
    id: int
    actor_id: int | None
    owner_id: int | None
    action: str
    target_type: str
    target_id: int | None
    detail: dict[str, Any] | None
    created_at: datetime
