"""Rendering a form letter for one recipient, exactly as the campaign would send it: in a
check process, within the same limits as a send (:mod:`.check`)."""

from __future__ import annotations

from sendas.config import Settings
from sendas.errors import FieldProblem, TemplateError, ValidationFailed
from sendas.merge import PARTS, Recipient, Templates, compile_templates
from sendas.schemas import PreviewIn, PreviewOut
from sendas.services.campaigns import check
from sendas.services.campaigns.recipients import address_problem


def preview(data: PreviewIn, settings: Settings | None = None) -> PreviewOut:
    """The subject, text and HTML one recipient gets; reads nothing stored.

    Raises :class:`ValidationFailed` for a bad address (``recipient.email``) and for a
    template that does not compile or render (or goes over the limits), on the part
    (subject, text, html) at fault; a missing merge field is named.
    :class:`~sendas.errors.Conflict` when every check process stays busy too long.
    """
    email = data.recipient.email.strip()
    problem = address_problem(email)
    if problem:
        raise ValidationFailed([FieldProblem(("body", "recipient", "email"), problem)])
    try:
        templates = compile_templates(data.subject, data.text, data.html)
    except TemplateError as exc:
        raise _refused(exc, None) from None
    recipient = Recipient(email, data.recipient.fields)
    try:
        templates.check(recipient, "the recipient")
    except TemplateError as exc:
        raise _refused(exc, templates) from None
    letter = (data.subject, data.text, data.html)
    out = check.checker(settings or Settings()).one(letter, email, dict(recipient.fields))
    if out.problem is not None or out.subject is None:
        failed = TemplateError(out.problem or "cannot render", field=out.field)
        raise _refused(failed, templates) from None
    return PreviewOut(subject=out.subject, text=out.text or "", html=out.html)


def _refused(exc: TemplateError, templates: Templates | None) -> ValidationFailed:
    """The problem on the part at fault: the one named, or the first using the field."""
    if exc.field in PARTS:
        part = exc.field
    elif exc.field and templates is not None:
        part = templates.part_of(exc.field)
    else:
        part = "text"
    return ValidationFailed.one(part, str(exc), "template_error")
