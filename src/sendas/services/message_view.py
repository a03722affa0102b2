"""Reading one message as its owner sees it: the headers, text and HTML parts and
attachments of the bytes that were composed, why it is still waiting, and for a form
letter not rendered yet, its templates and the recipient's values. Shared by the API and
the web UI; the caller has checked ownership (``messages.get_message``).
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy.orm import Session

from sendas.db.models import Campaign, Message
from sendas.outbox.lanes import HELD_UNTIL, lane_next_send_at, lane_pause
from sendas.schemas import AttachmentOut, MessageDetail, WaitingOut
from sendas.services.messages import message_out
from sendas.statuses import READY, CampaignStatus, MessageStatus

HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")
ATTENTION = "the alias's server refused the sign-in: open the alias and sign in again"


@dataclass
class Letter:
    """A form letter's message before it is rendered: what it will be made from."""

    subject: str
    text: str | None
    html: str | None
    fields: dict[str, Any]


@dataclass
class MessageView:
    """What the message page shows beyond :class:`MessageDetail`."""

    detail: MessageDetail
    text: str | None = None
    html: str | None = None
    bcc: list[str] = field(default_factory=list)
    letter: Letter | None = None


def _parsed(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)  # the default policy's class
    return parsed


def _body(parsed: EmailMessage, subtype: str) -> str | None:
    part = parsed.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset: show what can be read
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None


def _attachment_parts(parsed: EmailMessage) -> list[EmailMessage]:
    return [p for p in parsed.iter_attachments() if isinstance(p, EmailMessage)]


def _attachments(parsed: EmailMessage) -> list[AttachmentOut]:
    out = []
    for i, part in enumerate(_attachment_parts(parsed)):
        payload = part.get_payload(decode=True)
        out.append(
            AttachmentOut(
                index=i,
                filename=part.get_filename() or f"attachment-{i + 1}",
                content_type=part.get_content_type(),
                size=len(payload) if isinstance(payload, bytes) else 0,
            )
        )
    return out


def attachment(message: Message, index: int) -> tuple[AttachmentOut, bytes] | None:
    """The attachment at ``index`` and its decoded bytes, or None when there is none."""
    if message.raw is None:
        return None
    parsed = _parsed(message.raw)
    parts = _attachment_parts(parsed)
    if not 0 <= index < len(parts):
        return None
    payload = parts[index].get_payload(decode=True)
    return _attachments(parsed)[index], payload if isinstance(payload, bytes) else b""


def waiting(session: Session, message: Message, now: datetime) -> WaitingOut | None:
    """Why a queued or retrying message is not going out now, or None when it is not
    waiting (sending, or already settled)."""
    if message.status not in READY:
        return None
    if message.campaign_id is not None:
        campaign = session.get(Campaign, message.campaign_id)
        if campaign is not None and campaign.status == CampaignStatus.PAUSED:
            reason = campaign.paused_reason or "its form letter is paused"
            return WaitingOut(kind="letter_paused", reason=reason, until=None)
    if message.alias_id is not None:
        pause = lane_pause(session, message.alias_id, now)
        if pause is not None and pause.needs_attention:
            return WaitingOut(kind="needs_attention", reason=pause.reason or ATTENTION, until=None)
        if pause is not None and pause.until == HELD_UNTIL:
            reason = pause.reason or "the alias's queue is on hold"
            return WaitingOut(kind="owner_disabled", reason=reason, until=None)
        if pause is not None:
            reason = pause.reason or "the server asked to wait"
            return WaitingOut(kind="paused", reason=reason, until=pause.until)
    if message.status == MessageStatus.RETRYING and message.next_attempt_at > now:
        reason = message.server_reply or "a temporary failure"
        return WaitingOut(kind="retry", reason=reason, until=message.next_attempt_at)
    if message.alias_id is not None:
        slot = lane_next_send_at(session, message.alias_id)
        if slot is not None and slot > now:
            reason = "the alias's delay between emails"
            return WaitingOut(kind="pacing", reason=reason, until=slot)
    return WaitingOut(kind="turn", reason="waiting for a worker to send it", until=None)


def _fallback_headers(message: Message) -> dict[str, str]:
    """What is known of a form letter's message before it is composed."""
    out = {"From": message.envelope_from, "To": ", ".join(message.to_addrs or [])}
    if message.subject:
        out["Subject"] = message.subject
    return out


def message_view(
    session: Session, message: Message, *, include_raw: bool = False, now: datetime | None = None
) -> MessageView:
    """The message as its owner reads it (``message`` already checked to be theirs)."""
    now = now or datetime.now(UTC)
    base = message_out(message, include_raw=include_raw).model_dump()
    view = MessageView(
        MessageDetail(
            **base,
            headers=_fallback_headers(message),
            attachments=[],
            rendered=message.raw is not None,
            waiting=waiting(session, message, now),
        ),
        bcc=list(message.bcc_addrs or []),
    )
    if message.raw is not None:
        parsed = _parsed(message.raw)
        view.detail.headers = {h: str(parsed[h]) for h in HEADERS if parsed[h] is not None}
        view.detail.attachments = _attachments(parsed)
        view.text, view.html = _body(parsed, "plain"), _body(parsed, "html")
    elif message.campaign_id is not None:
        campaign = session.get(Campaign, message.campaign_id)
        if campaign is not None:
            fields = dict(message.merge_fields or {})
            view.letter = Letter(
                campaign.subject, campaign.text_template, campaign.html_template, fields
            )
    return view
