"""Rendering a form letter for one recipient, exactly as the campaign would send it."""

from __future__ import annotations

from sendas.errors import FieldProblem, TemplateError, ValidationFailed
from sendas.merge import PARTS, Recipient, Templates, compile_templates
from sendas.merge import preview as render_preview
from sendas.schemas import PreviewIn, PreviewOut
from sendas.services.campaigns.recipients import address_problem


def preview(data: PreviewIn) -> PreviewOut:
    """The subject, text and HTML one recipient gets; reads nothing stored.

    Raises :class:`ValidationFailed` for a bad address (``recipient.email``) and for a
    template that does not compile or render, on the part (subject, text, html) at fault;
    a missing merge field is named.
    """
    email = data.recipient.email.strip()
    problem = address_problem(email)
    if problem:
        raise ValidationFailed([FieldProblem(("body", "recipient", "email"), problem)])
    try:
        templates = compile_templates(data.subject, data.text, data.html)
    except TemplateError as exc:
        raise _refused(exc, None) from None
    try:
        rendered = render_preview(
            data.subject, data.text, data.html, Recipient(email, data.recipient.fields)
        )
    except TemplateError as exc:
        raise _refused(exc, templates) from None
    return PreviewOut(subject=rendered.subject, text=rendered.text, html=rendered.html)


def _refused(exc: TemplateError, templates: Templates | None) -> ValidationFailed:
    """The problem on the part at fault: the one named, or the first using the field."""
    if exc.field in PARTS:
        part = exc.field
    elif exc.field and templates is not None:
        part = templates.part_of(exc.field)
    else:
        part = "text"
    return ValidationFailed.one(part, str(exc), "template_error")
