"""Form letters: sandboxed templates, strict merge fields, preview, and per-recipient render.

A template reaches a recipient's values three ways: ``{{ email }}``, ``{{ fields.NAME }}``
(or ``fields['NAME']`` for names that are not identifiers) and plain ``{{ NAME }}``. Every
field a template names is known before anything is queued (:meth:`Templates.required`),
so a campaign whose list lacks one is refused at creation, not at the 10,000th send.

Templates run in Jinja2's immutable sandbox with ``StrictUndefined``: no attribute access
to internals (``__class__``...), no mutation of the values, and within :class:`Limits` of
time and output size per recipient (:mod:`sendas.sandbox`). The text part is not escaped;
the HTML part is autoescaped.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from sqlalchemy.orm import Session

from sendas.errors import TemplateError, TemplateOverBudget
from sendas.sandbox import Limits, Sandbox, budget, wrote

# Names every template may use without a recipient providing them.
BUILTIN_NAMES = frozenset({"email", "fields"})
MAX_TEMPLATE_CHARS = 1_000_000
PARTS = ("subject", "text", "html")

_LINE_BREAKS = re.compile(r"[\r\n\x85\u2028\u2029]")

_TEXT_ENV = Sandbox(autoescape=False)
_HTML_ENV = Sandbox(autoescape=True)


@dataclass(frozen=True)
class Recipient:
    """One recipient of a form letter: the address and the named values."""

    email: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


@dataclass(frozen=True)
class _Part:
    name: str
    template: jinja2.Template
    # Field names in the order the template first uses them.
    fields: tuple[str, ...]


class Templates:
    """The compiled subject, text and HTML of one form letter.

    Build with :func:`compile_templates`; raises :class:`TemplateError` (``field`` is the
    part: ``subject``, ``text`` or ``html``) for a syntax error.
    """

    def __init__(self, subject: str, text: str | None, html: str | None) -> None:
        self._parts: list[_Part] = []
        self._parts.append(_compile("subject", subject, _TEXT_ENV))
        self._parts.append(_compile("text", text or "", _TEXT_ENV))
        self._html = html is not None
        if html is not None:
            self._parts.append(_compile("html", html, _HTML_ENV))
        order: dict[str, str] = {}
        for part in self._parts:
            for name in part.fields:
                order.setdefault(name, part.name)
        # field -> the first part that uses it, in template order
        self._field_part = order
        self._subject_fields = frozenset(self._parts[0].fields)

    @property
    def required(self) -> tuple[str, ...]:
        """Every field name a recipient must provide, in order of first use."""
        return tuple(self._field_part)

    def part_of(self, field: str) -> str:
        """The first part (``subject``, ``text``, ``html``) that uses ``field``."""
        return self._field_part.get(field, "text")

    def missing(self, fields: Mapping[str, Any] | Iterable[str]) -> str | None:
        """The first required field not among ``fields`` (a mapping or its keys), or None."""
        keys = fields if isinstance(fields, dict | Mapping) else set(fields)
        for name in self._field_part:
            if name not in keys:
                return name
        return None

    def check(self, recipient: Recipient, where: str) -> None:
        """Refuse a recipient that lacks a field or puts a line break into the subject.

        ``where`` names the recipient in the message (``"line 7"``, ``"recipient 3"``).
        Raises :class:`TemplateError` with ``field`` and ``recipient`` set.
        """
        name = self.missing(recipient.fields)
        if name is not None:
            raise TemplateError(
                f"unknown merge field {name!r}: {where} ({recipient.email}) has no such field",
                field=name,
                recipient=recipient.email,
            )
        for name in self._subject_fields:
            value = recipient.fields.get(name)
            if isinstance(value, str) and _LINE_BREAKS.search(value):
                raise TemplateError(
                    f"merge field {name!r} of {where} ({recipient.email}) has a line break "
                    "and is used in the subject",
                    field=name,
                    recipient=recipient.email,
                )

    def render(self, recipient: Recipient, limits: Limits | None = None) -> Rendered:
        """Render every part for one recipient, within ``limits`` (default :class:`Limits`).

        Raises :class:`TemplateError` when a value is missing, the sandbox refuses an
        operation, or the rendered subject contains a line break;
        :class:`~sendas.errors.TemplateOverBudget` past the time or output limit.
        """
        context = _context(recipient)
        out: dict[str, str] = {}
        with budget(limits or Limits()):
            for part in self._parts:
                out[part.name] = _render_part(part, context, recipient.email)
        subject = out["subject"]
        if _LINE_BREAKS.search(subject):
            raise TemplateError(
                f"the rendered subject contains a line break (recipient {recipient.email})",
                field="subject",
                recipient=recipient.email,
            )
        return Rendered(subject=subject, text=out["text"], html=out.get("html"))


def _render_part(part: _Part, context: dict[str, Any], email: str) -> str:
    """One part, streamed so that its size is counted as it is written."""
    chunks: list[str] = []
    try:
        for chunk in part.template.generate(context):
            wrote(len(chunk))
            chunks.append(chunk)
    except TemplateOverBudget as exc:
        # type(exc): a time-out stays a TemplateTimedOut (the outbox retries those).
        raise type(exc)(f"{part.name}: {exc}", field=part.name, recipient=email) from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"{part.name}: {exc.message} (recipient {email})",
            field=_undefined_name(exc) or part.name,
            recipient=email,
        ) from None
    except SecurityError as exc:
        raise TemplateError(
            f"{part.name}: not allowed in a template: {exc}", field=part.name, recipient=email
        ) from None
    except RecursionError:
        raise TemplateError(
            f"{part.name}: macros call themselves too deeply", field=part.name, recipient=email
        ) from None
    except MemoryError:
        raise TemplateOverBudget(
            f"{part.name}: the template needed too much memory for this recipient",
            field=part.name,
            recipient=email,
        ) from None
    except Exception as exc:  # a filter or operator failing on this recipient's value
        raise TemplateError(
            f"{part.name}: {type(exc).__name__}: {exc} (recipient {email})",
            field=part.name,
            recipient=email,
        ) from None
    return "".join(chunks)


def _context(recipient: Recipient) -> dict[str, Any]:
    # Plain names first, so a column called "email" or "fields" cannot shadow the built-ins.
    values = dict(recipient.fields)
    return {**values, "email": recipient.email, "fields": values}


def _undefined_name(exc: jinja2.UndefinedError) -> str | None:
    match = re.search(r"'([^']+)' is undefined|has no attribute '([^']+)'", exc.message or "")
    if match is None:
        return None
    return match.group(1) or match.group(2)


def _compile(part: str, source: str, env: jinja2.Environment) -> _Part:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"{part}: longer than {MAX_TEMPLATE_CHARS} characters", field=part)
    try:
        ast = env.parse(source)
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{part}: line {exc.lineno}: {exc.message}", field=part) from None
    return _Part(part, template, tuple(_referenced_fields(ast)))


def _referenced_fields(ast: nodes.Template) -> list[str]:
    """Field names a template needs: free plain names and ``fields.X`` / ``fields['X']``."""
    free = meta.find_undeclared_variables(ast)
    found: dict[str, None] = {}
    # ``fields.get('x', '')`` calls a method: it names no field.
    called = {id(n.node) for n in ast.find_all(nodes.Call)}
    # Walk in source order so the first missing field named is the first one used.
    for node in _walk(ast):
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in free:
            if node.name not in BUILTIN_NAMES:
                found.setdefault(node.name)
        elif isinstance(node, nodes.Getattr) and _is_fields(node.node) and id(node) not in called:
            found.setdefault(node.attr)
        elif (
            isinstance(node, nodes.Getitem)
            and _is_fields(node.node)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            found.setdefault(node.arg.value)
    return list(found)


def _is_fields(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "fields" and node.ctx == "load"


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


@lru_cache(maxsize=64)
def compile_templates(subject: str, text: str | None, html: str | None) -> Templates:
    """Compile (and cache) a form letter's templates. Raises :class:`TemplateError`."""
    return Templates(subject, text, html)


def preview(
    subject: str,
    text: str | None,
    html: str | None,
    recipient: Recipient,
    limits: Limits | None = None,
) -> Rendered:
    """Render one recipient, as the campaign would. Raises :class:`TemplateError`."""
    templates = compile_templates(subject, text, html)
    templates.check(recipient, "the recipient")
    return templates.render(recipient, limits)


@dataclass(frozen=True)
class _Letter:
    templates: Templates
    alias_name: str
    from_address: str
    reply_to: str | None
    body_dictionary: bytes  # what its rendered messages are packed with (sendas.db.packing)


# Per session (one transaction), the campaigns already looked up: the session's identity map
# holds objects only weakly, so without this every message would query its campaign again.
_LETTERS: weakref.WeakKeyDictionary[Session, dict[int, _Letter]] = weakref.WeakKeyDictionary()


def _letter(session: Session, campaign_id: int) -> _Letter:
    from sendas.db.models import Alias, Campaign

    known = _LETTERS.setdefault(session, {})
    letter = known.get(campaign_id)
    if letter is not None:
        return letter
    # No autoflush: the caller may hold many changed rows; flushing them here is its job.
    with session.no_autoflush:
        campaign = session.get(Campaign, campaign_id)
        alias = session.get(Alias, campaign.alias_id) if campaign is not None else None
    if campaign is None:
        raise TemplateError(f"campaign {campaign_id} no longer exists")
    if alias is None:
        raise TemplateError(f"the alias of campaign {campaign_id} no longer exists")
    templates = compile_templates(campaign.subject, campaign.text_template, campaign.html_template)
    letter = _Letter(templates, alias.alias_name, alias.from_address, alias.reply_to,
                     campaign.body_dictionary)  # fmt: skip
    known[campaign_id] = letter
    return letter


def body_dictionary(session: Session, campaign_id: int) -> bytes:
    """The dictionary a campaign's rendered messages are packed with, kept with its
    compiled templates (looked up once per session, as they are)."""
    return _letter(session, campaign_id).body_dictionary


def render_message(session: Session, message: Any, limits: Limits | None = None) -> bytes:
    """Render and compose a campaign message for its recipient; return the bytes to submit.

    ``message`` is a :class:`~sendas.db.models.Message` of kind ``campaign`` whose ``raw``
    is still NULL. Sets ``message.subject`` and ``message.message_id`` as a side effect.
    Rendering stays within ``limits`` (default :class:`Limits`).
    Raises :class:`TemplateError` (rendering), or :class:`~sendas.errors.ValidationFailed` /
    :class:`~sendas.errors.SmtpUtf8Required` from :func:`sendas.compose.compose`.
    """
    from sendas.compose import Content, Sender, compose, needs_smtputf8

    letter = _letter(session, message.campaign_id)
    email = (message.to_addrs or message.recipients)[0]
    rendered = letter.templates.render(Recipient(email, message.merge_fields or {}), limits)
    composed = compose(
        Sender(letter.alias_name, letter.from_address, letter.reply_to),
        Content(to=[email], subject=rendered.subject, text=rendered.text, html=rendered.html),
        utf8=needs_smtputf8([letter.from_address, email]),
    )
    message.subject = rendered.subject
    message.message_id = composed.message_id
    return composed.data
