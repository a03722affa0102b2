"""A form letter posted as a form (the API's multipart body, the web page): one reading.

Starlette's ``FormData`` is a mapping of field names to text or uploaded files; nothing here
depends on it beyond that shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sendas.errors import ValidationFailed
from sendas.schemas import CampaignTemplatesIn
from sendas.services.campaigns.csvfile import NO_LIMITS, CsvLimits
from sendas.services.campaigns.recipients import (
    RowSource,
    UploadedFile,
    recipients_from_upload,
)

FormValue = str | UploadedFile
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class LetterForm:
    templates: CampaignTemplatesIn
    rows: RowSource
    skip_invalid: bool


def letter_from_form(
    form: Mapping[str, FormValue], *, paste_box: bool = False, limits: CsvLimits = NO_LIMITS
) -> LetterForm:
    """The templates, recipients and ``skip_invalid`` of a posted form letter.

    Fields: ``alias_id`` (blank: the default alias), ``subject``, ``text``, ``html`` (blank:
    no HTML part), each text or a UTF-8 file; ``skip_invalid`` (1/true/yes/on); the
    recipients as the CSV ``file``, or with ``paste_box`` the ``recipients_text`` box when
    no file is given; ``email_column`` (blank: found by its name) picks the address column.
    Raises pydantic's ValidationError for the templates, and
    :class:`ValidationFailed` for the recipients (see :func:`recipients_from_upload`).
    """
    subject, html = _text(form, "subject"), _text(form, "html")
    values: dict[str, Any] = {
        "alias_id": (_text(form, "alias_id") or "").strip() or None,
        "subject": None if subject is None else subject.strip(),
        "text": _text(form, "text"),
        "html": html if html and html.strip() else None,
    }
    templates = CampaignTemplatesIn.model_validate(
        {k: v for k, v in values.items() if v is not None}
    )
    pasted = form.get("recipients_text")
    rows = recipients_from_upload(
        form.get("file"),
        pasted=(pasted if isinstance(pasted, str) else "") if paste_box else None,
        email_column=_text(form, "email_column") or None,
        limits=limits,
    )
    skip = str(form.get("skip_invalid", "")).lower() in _TRUE
    return LetterForm(templates, rows, skip)


def _text(form: Mapping[str, FormValue], name: str) -> str | None:
    """A text field, or a file sent in its place (decoded as UTF-8)."""
    value = form.get(name)
    if value is None or isinstance(value, str):
        return value
    value.file.seek(0)
    try:
        return value.file.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed.one(name, "the file is not UTF-8 text") from None
