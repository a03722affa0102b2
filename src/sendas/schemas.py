"""Input and output shapes shared by the API, the web UI and the CLI.

Input models forbid unknown fields and validate every value; output models are separate
and have no field that could carry a secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
)

from sendas.compose import Attachment, Content
from sendas.errors import ValidationFailed
from sendas.statuses import CampaignStatus, MessageStatus
from sendas.validation import at_most

TlsMode = Literal["auto", "implicit", "starttls", "none"]
AuthMethod = Literal["password", "google", "microsoft"]
Role = Literal["admin", "user"]

# RFC 5322 caps a header line at 998 characters; no header-bound value may be longer.
HEADER_MAX = 998
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_safe(value: str) -> str:
    """Refuse CR, LF and other control characters: they could inject a header."""
    if _CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


def check_email(value: str) -> ValidatedEmail:
    """The one address check of sendas: syntax only (no DNS). Raises EmailNotValidError.

    ``test_environment`` admits the reserved .test domain (RFC 2606), which private and
    test mail servers use; other special-use names stay refused.
    """
    return validate_email(
        value, check_deliverability=False, allow_smtputf8=True, test_environment=True
    )


def normalize_email(value: str) -> str:
    """Validate syntax only (no DNS) and return the address with a Unicode domain."""
    header_safe(value)
    try:
        result = check_email(value)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    return result.normalized


def strip_password(value: SecretStr | None) -> SecretStr | None:
    """Google shows app passwords in groups with spaces; the spaces are not part of it."""
    if value is None:
        return None
    raw = value.get_secret_value()
    if _CONTROL.search(raw):
        raise ValueError("must not contain line breaks or control characters")
    if re.fullmatch(r"[A-Za-z]{4}( [A-Za-z]{4}){3}", raw.strip()):
        return SecretStr(raw.replace(" ", ""))
    return value


def parse_delay_ms(text: str) -> int:
    """The "delay between emails" box of a form, in milliseconds; empty means no pause.

    Digits may be grouped with ``,``, ``_`` or spaces (``2,500``). Raises ValueError in plain
    words, the API's words for a value over the limit.
    """
    digits = re.sub(r"[,_ ]", "", text.strip())
    if not digits:
        return 0
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError("must be a whole number of milliseconds (0 for no pause)")
    value = int(digits)
    if value > DELAY_MS_MAX:
        raise ValueError(at_most(DELAY_MS_MAX))
    return value


HeaderText = Annotated[str, StringConstraints(max_length=HEADER_MAX), AfterValidator(header_safe)]
ShortText = Annotated[
    str, StringConstraints(max_length=200, strip_whitespace=True), AfterValidator(header_safe)
]
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalize_email)]
Password = Annotated[SecretStr, Field(max_length=1000), AfterValidator(strip_password)]
DELAY_MS_MAX = 3_600_000
DelayMs = Annotated[int, Field(ge=0, le=DELAY_MS_MAX, strict=True)]
ServerText = Annotated[str, StringConstraints(max_length=300, strip_whitespace=True)]
PemText = Annotated[str, StringConstraints(max_length=200_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=200_000)


# --- users and tokens ---------------------------------------------------------------------


class UserCreate(Strict):
    email: Email
    name: ShortText = Field(min_length=1)
    role: Role = "user"
    password: Annotated[SecretStr, Field(min_length=8, max_length=1000)] | None = None


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    created_at: datetime


class TokenCreate(Strict):
    name: ShortText = ""


class TokenOut(BaseModel):
    id: int
    name: str
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
    alias_name: ShortText | None = None
    from_address: Email | None = None
    reply_to: Email | None = None
    imap_account_id: int | None = None
    is_default: bool | None = None
    delay_ms: DelayMs | None = None
    auth: AuthMethod | None = None


class AliasTestIn(AliasPatch):
    """Unsaved Edit Alias settings to test; with ``alias_id``, left-out fields (the password
    too) come from that saved alias."""

    alias_id: int | None = None


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


# --- messages ------------------------------------------------------------------------------

MAX_RECIPIENTS = 500
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
MAX_BODY = 10 * 1024 * 1024


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: HeaderText = Field(min_length=1)
    content_type: Annotated[str, Field(max_length=200)] = "application/octet-stream"
    content_base64: Annotated[str, Field(max_length=MAX_ATTACHMENT_BYTES * 4 // 3 + 4)]

    @field_validator("content_base64")
    @classmethod
    def _b64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64") from None
        return value

    def decoded(self) -> bytes:
        return base64.b64decode(self.content_base64)


class SystemMessageIn(BaseModel):
    """A message's content; recipients are checked one by one (422 names the field)."""

    model_config = ConfigDict(extra="forbid")

    to: Annotated[list[Email], Field(max_length=MAX_RECIPIENTS)] = []
    cc: Annotated[list[Email], Field(max_length=MAX_RECIPIENTS)] = []
    bcc: Annotated[list[Email], Field(max_length=MAX_RECIPIENTS)] = []
    subject: HeaderText = ""
    text: Annotated[str, Field(max_length=MAX_BODY)] = ""
    html: Annotated[str, Field(max_length=MAX_BODY)] | None = None
    attachments: Annotated[list[AttachmentIn], Field(max_length=100)] = []

    def content(self) -> Content:
        total = sum(len(a.content_base64) * 3 // 4 for a in self.attachments)
        if total > MAX_ATTACHMENT_BYTES:
            raise ValidationFailed.one(
                "attachments", f"attachments add up to more than {MAX_ATTACHMENT_BYTES} bytes"
            )
        if not (self.to or self.cc or self.bcc):
            raise ValidationFailed.one("to", "at least one recipient (to, cc or bcc) is required")
        return Content(
            to=self.to, cc=self.cc, bcc=self.bcc, subject=self.subject, text=self.text,
            html=self.html,
            attachments=[Attachment(a.filename, a.content_type, a.decoded())
                         for a in self.attachments],
        )  # fmt: skip


class MessageIn(SystemMessageIn):
    alias_id: int | None = None


class MessageOut(BaseModel):
    id: int
    kind: str
    status: MessageStatus
    alias_id: int | None
    campaign_id: int | None
    envelope_from: str
    recipients: list[str]
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    message_id: str
    attempts: int
    next_attempt_at: datetime | None
    server_reply: str | None
    error_step: str | None
    hint: str | None
    recipient_results: dict[str, Any] | None
    sent_copy: str | None
    sent_copy_detail: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    raw_base64: str | None = None


class MessageList(BaseModel):
    """A page of ``GET /api/messages`` (``MessagePage`` is a form letter's outcome page)."""

    items: list[MessageOut]
    total: int
    limit: int
    offset: int


# --- form letters -------------------------------------------------------------------------

MAX_JSON_RECIPIENTS = 100_000


class LetterStrict(BaseModel):
    """Form-letter input: templates may be long (up to 1,000,000 characters)."""

    model_config = ConfigDict(extra="forbid", str_max_length=1_000_000)


class RecipientIn(LetterStrict):
    email: str = Field(max_length=320)
    fields: dict[str, Any] = {}


class CampaignTemplatesIn(LetterStrict):
    """What a campaign says; recipients come as JSON (:class:`CampaignCreate`) or a CSV."""

    alias_id: int | None = None
    subject: str = Field(min_length=1, max_length=998)
    text: str | None = None
    html: str | None = None


class CampaignCreate(CampaignTemplatesIn):
    recipients: list[RecipientIn] = Field(min_length=1, max_length=MAX_JSON_RECIPIENTS)
    skip_invalid: bool = False


class PreviewIn(LetterStrict):
    subject: str = Field(max_length=998)
    text: str | None = None
    html: str | None = None
    recipient: RecipientIn


class PreviewOut(BaseModel):
    subject: str
    text: str
    html: str | None


class InvalidLine(BaseModel):
    """A refused recipient: CSV line number (header = line 1), or position in a JSON list."""

    line: int
    email: str | None
    reason: str


class CampaignOut(BaseModel):
    id: int
    alias_id: int
    subject: str
    status: CampaignStatus
    paused_reason: str | None
    total: int
    counts: dict[str, int]
    rate: float = Field(description="Messages sent per second over the last minute.")
    eta_seconds: float | None
    created_at: datetime
    completed_at: datetime | None


class CampaignCreated(CampaignOut):
    invalid_count: int = 0
    invalid_lines: list[InvalidLine] = []


class MessageOutcome(BaseModel):
    id: int
    email: str
    status: str
    attempts: int
    server_reply: str | None
    hint: str | None
    error_step: str | None
    sent_at: datetime | None
    updated_at: datetime


class CampaignMessagePage(BaseModel):
    """One page of a form letter's per-recipient outcomes."""

    items: list[MessageOutcome]
    next_after_id: int | None


# --- database outgoing settings ------------------------------------------------------------


class SystemOutgoingIn(SmtpFields):
    from_address: Email | None = None
    from_name: ShortText | None = None
    reply_to: Email | None = None
    delay_ms: DelayMs | None = None


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
    password_set: bool
    configured: bool
    last_test: StoredTestResult
    warnings: list[str] = []
    updated_at: datetime


# --- Sign in with Google / Microsoft: the registered applications (admin) -------------------

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,199}")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def check_tenant(value: str | None) -> str | None:
    """``common``, ``organizations``, ``consumers``, a tenant id (GUID) or a domain."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _TENANT.fullmatch(value):
        raise ValueError("must be common, organizations, consumers, a tenant ID or a domain")
    return value


def check_discovery_url(value: str | None) -> str | None:
    """An https URL (http only on this machine's loopback address, for tests)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    header_safe(value)
    scheme, _, rest = value.partition("://")
    host = (
        rest.split("/", 1)[0].rsplit(":", 1)[0]
        if not rest.startswith("[")
        else (rest.split("]", 1)[0] + "]")
    )
    if not rest or " " in value:
        raise ValueError("must be a URL such as https://login.example.com/.../openid-configuration")
    if scheme == "https" or (scheme == "http" and host in _LOOPBACK_HOSTS):
        return value
    raise ValueError("must start with https://")


class OAuthClientIn(Strict):
    """PUT /api/system/oauth/{provider}: the application registered at Google or Microsoft.

    ``client_secret`` left out keeps the stored one (it is write-only); ``tenant`` applies to
    Microsoft only (default ``common``); ``discovery_url`` left out uses the provider's own
    OpenID configuration URL.
    """

    client_id: Annotated[
        str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)
    ]
    client_secret: Annotated[SecretStr, Field(min_length=1, max_length=2000)] | None = None
    tenant: Annotated[str | None, AfterValidator(check_tenant)] = None
    discovery_url: Annotated[
        str | None, StringConstraints(max_length=1000), AfterValidator(check_discovery_url)
    ] = None

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        if not v:
            raise ValueError("is required")
        return header_safe(v)


class OAuthClientOut(BaseModel):
    """A provider's registration as the admin sees it: never the secret itself."""

    provider: Literal["google", "microsoft"]
    label: str
    configured: bool
    client_id: str
    client_secret_set: bool
    tenant: str | None
    discovery_url: str | None
    redirect_uri: str
    scopes: list[str]
    imap_scopes: list[str]
    updated_at: datetime | None


class AuditOut(BaseModel):
    id: int
    actor_id: int | None
    owner_id: int | None
    action: str
    target_type: str
    target_id: int | None
    detail: dict[str, Any] | None
    created_at: datetime


# --- Test Connection result -----------------------------------------------------------------


class ConnectionTestStep(BaseModel):
    """One step of a Test Connection (``connect``, ``tls``, ``auth``, ``imap_login`` ...)."""

    name: str
    ok: bool
    ms: float
    detail: str = ""


class ConnectionTestResult(BaseModel):
    """The answer of every Test Connection: SMTP, IMAP, or an alias with both.

    ``step``, ``server_reply`` and ``hint`` say where and why a failed test stopped;
    ``sent_folder`` names the Sent folder the IMAP part found.
    """

    status: Literal["OK", "FAILED"]
    step: str | None = None
    server_reply: str = ""
    hint: str = ""
    steps: list[ConnectionTestStep] = []
    sent_folder: str | None = None
    tested_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def followed_by(self, other: ConnectionTestResult, prefix: str) -> ConnectionTestResult:
        """This result, then ``other``'s steps named ``prefix + name``; the first failure
        stops the test, so it names the failed step."""
        renamed = [s.model_copy(update={"name": prefix + s.name}) for s in other.steps]
        steps = [*self.steps, *renamed]
        if not self.ok:
            return self.model_copy(update={"steps": steps})
        if not other.ok:
            step = prefix + (other.step or "connect")
            return other.model_copy(update={"step": step, "steps": steps})
        return self.model_copy(update={"steps": steps, "sent_folder": other.sent_folder})


def _stored_step(raw: Any, passed: bool) -> Any:
    """A step as older versions stored it: ``step`` for the name, ``status`` ("ok"/"OK"/
    "FAILED") instead of ``ok``, ``reply`` instead of ``detail``."""
    if not isinstance(raw, dict) or "name" in raw:
        return raw
    ok = raw["ok"] if isinstance(raw.get("ok"), bool) else str(raw.get("status")).upper() == "OK"
    return {
        "name": str(raw.get("step") or "?"),
        # Those versions marked IMAP steps of a passing test as failed; a pass has no failure.
        "ok": ok or passed,
        "ms": raw.get("ms") or 0,
        "detail": str(raw.get("detail") or raw.get("reply") or ""),
    }


def stored_test_result(raw: Any) -> Any:
    """A ``last_test`` as read from the database, whatever version wrote it, in the shape
    of :class:`ConnectionTestResult` (the one place that knows the older shapes)."""
    if not isinstance(raw, dict):
        return raw
    passed = raw.get("status") == "OK"
    steps = [_stored_step(s, passed) for s in raw.get("steps") or []]
    return {**raw, "step": raw.get("step") or None, "steps": steps}


StoredTestResult = Annotated[ConnectionTestResult | None, BeforeValidator(stored_test_result)]
