"""Single messages and form letters."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from sendas.compose import Attachment, Content
from sendas.errors import ValidationFailed
from sendas.schemas.fields import Email, HeaderText, ObjectId
from sendas.statuses import CampaignStatus, MessageStatus

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

    def content(self, *, max_attachment_bytes: int = MAX_ATTACHMENT_BYTES) -> Content:
        """The message to compose; the attachments' total is checked before any is decoded."""
        total = sum(len(a.content_base64) * 3 // 4 for a in self.attachments)
        if total > max_attachment_bytes:
            raise ValidationFailed.one(
                "attachments",
                f"attachments add up to more than {max_attachment_bytes:,} bytes "
                "(SENDAS_MAX_ATTACHMENT_BYTES)",
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
    alias_id: ObjectId | None = None


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


class WaitingOut(BaseModel):
    """Why a message that is still to go out is not going out now."""

    kind: Literal[
        "needs_attention",
        "owner_disabled",
        "paused",
        "letter_paused",
        "retry",
        "pacing",
        "turn",
    ] = Field(
        description="needs_attention: the alias's server refused the sign-in (fix the alias); "
        "owner_disabled: the owner's account is disabled; paused: the server asked to wait "
        "(quota, rate limit) until `until`; letter_paused: its form letter is paused; retry: "
        "a temporary failure, tried again at `until`; pacing: the alias's delay between "
        "emails, next start at `until`; turn: waiting for a worker."
    )
    reason: str
    until: datetime | None


class AttachmentOut(BaseModel):
    """An attachment of a sent message; ``index`` names it in the download URL."""

    index: int
    filename: str
    content_type: str
    size: int = Field(description="Decoded size in bytes.")


class MessageDetail(MessageOut):
    """``GET /api/messages/{id}``: the message and what can be read of it."""

    headers: dict[str, str] = Field(
        description="From, To, Cc, Reply-To, Subject, Date and Message-ID as composed "
        "(empty until a form letter's message is rendered at send time)."
    )
    attachments: list[AttachmentOut]
    rendered: bool = Field(description="The message's bytes are stored (composed).")
    waiting: WaitingOut | None = Field(
        description="Why it has not gone out yet; null unless queued or retrying."
    )


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


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The merge field (``name`` or ``name.0``) whose text holds a lone surrogate, if any:
    JSON can spell one (``"\\ud800"``) but it is not text and cannot be stored or sent."""
    if isinstance(value, str):
        return path if any("\ud800" <= ch <= "\udfff" for ch in value) else None
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _lone_surrogate(str(key), "") is not None:
                return f"{path}.{key!a}".lstrip(".")
            children.append((f"{path}.{key}".lstrip("."), item))
    elif isinstance(value, list):
        children = [(f"{path}.{i}", item) for i, item in enumerate(value)]
    for child_path, item in children:
        found = _lone_surrogate(item, child_path)
        if found is not None:
            return found
    return None


class RecipientIn(LetterStrict):
    email: str = Field(max_length=320)
    fields: dict[str, Any] = {}

    @field_validator("fields")
    @classmethod
    def _valid_text(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = _lone_surrogate(v, "")
        if bad is not None:
            raise ValueError(f"{bad} is not valid text (it holds a lone surrogate code point)")
        return v


class CampaignTemplatesIn(LetterStrict):
    """What a campaign says; recipients come as JSON (:class:`CampaignCreate`) or a CSV."""

    alias_id: ObjectId | None = None
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
    skipped_suppressed: int = Field(
        0, description="Recipients not queued: their address is on your suppression list."
    )
    skipped_addresses: list[str] = Field(
        [], description="The first of those addresses (at most 100), in lower case."
    )


class CampaignCreated(CampaignOut):
    invalid_count: int = 0
    invalid_lines: list[InvalidLine] = []


class CampaignSummary(BaseModel):
    """One form letter in the history: what, from which alias, how far, when."""

    id: int
    user_id: int
    alias_id: int
    alias_description: str
    from_address: str
    subject: str
    status: CampaignStatus
    paused_reason: str | None
    total: int
    counts: dict[str, int]
    created_at: datetime
    completed_at: datetime | None = Field(description="When it completed or was cancelled.")


class CampaignPage(BaseModel):
    """A page of form letters, newest first; pass ``next_before_id`` as ``before_id``."""

    items: list[CampaignSummary]
    next_before_id: int | None


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
