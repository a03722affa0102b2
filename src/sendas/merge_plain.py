"""Plain form letters rendered without Jinja: a template made only of text and
``{{ NAME }}``, ``{{ fields.NAME }}``, ``{{ fields['NAME'] }}`` or ``{{ email }}`` (no
filter, no tag, no expression) is text with holes. Such a letter's render cannot fail or
run long once :meth:`~sendas.merge.Templates.check` has passed and the values are strings:
its output is the text with the values put in (HTML-escaped in the HTML part), of a length
known in advance. Checking a million recipients of it is a string join each, in the
calling process, instead of a sandboxed render in a check process.

Anything else (a value that is not a string, output over the budget, a line break in the
subject) is left to the sandboxed render, which says what is wrong exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from markupsafe import escape

from sendas.errors import TemplateError
from sendas.merge import Recipient, Templates, compile_templates
from sendas.sandbox import Limits

_LINE_BREAKS = re.compile(r"[\r\n\x85\u2028\u2029]")
_EMAIL = object()  # the hole for ``{{ email }}``

Piece = str | tuple[object]
"""A literal, or a hole: ``(field name,)`` or ``(_EMAIL,)``."""


@dataclass(frozen=True)
class _Plain:
    pieces: tuple[Piece, ...]
    escaped: bool

    def render(self, email: str, fields: Mapping[str, Any]) -> str | None:
        out: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            key = piece[0]
            value = email if key is _EMAIL else fields.get(key)  # type: ignore[call-overload]
            if type(value) is not str:
                return None  # numbers, lists...: Jinja's own conversion decides
            out.append(str(escape(value)) if self.escaped else value)
        return "".join(out)


def _hole(node: nodes.Expr) -> tuple[object] | None:
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name != "fields":
        return (_EMAIL,) if node.name == "email" else (node.name,)
    inner = getattr(node, "node", None)
    if not (isinstance(inner, nodes.Name) and inner.name == "fields" and inner.ctx == "load"):
        return None
    if isinstance(node, nodes.Getattr) and not hasattr(dict, node.attr):
        return (node.attr,)  # ``fields.items`` would be the dict's method, not a field
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return (node.arg.value,)
    return None


def _plain(source: str, escaped: bool) -> _Plain | None:
    from sendas.merge import _HTML_ENV, _TEXT_ENV

    env = _HTML_ENV if escaped else _TEXT_ENV
    pieces: list[Piece] = []
    for node in env.parse(source).body:
        if not isinstance(node, nodes.Output):
            return None
        for item in node.nodes:
            if isinstance(item, nodes.TemplateData):
                pieces.append(item.data)
                continue
            hole = _hole(item)
            if hole is None:
                return None
            pieces.append(hole)
    return _Plain(tuple(pieces), escaped)


@dataclass(frozen=True)
class PlainLetter:
    """A letter whose parts are all plain: subjects computed here, within ``limits``."""

    parts: tuple[_Plain, ...]  # subject, text, html (if any)
    limits: Limits

    def subject(self, email: str, fields: Mapping[str, Any]) -> str | None:
        """The rendered subject of a recipient that passed ``Templates.check``, or None
        when this recipient needs the sandboxed render (to be refused or told apart)."""
        size = 0
        subject: str | None = None
        for part in self.parts:
            out = part.render(email, fields)
            if out is None:
                return None
            size += len(out)
            subject = subject if subject is not None else out
        if subject is None or size > self.limits.max_output or _LINE_BREAKS.search(subject):
            return None
        return subject


def plain_letter(
    subject: str, text: str | None, html: str | None, limits: Limits, sample: Recipient
) -> PlainLetter | None:
    """The letter as text with holes, or None when a part is more than that. ``sample``
    (a recipient that passed the check) is rendered both ways once: any difference from
    Jinja's own output and the letter goes the sandboxed way."""
    parts = [_plain(subject, False), _plain(text or "", False)]
    if html is not None:
        parts.append(_plain(html, True))
    if any(p is None for p in parts):
        return None
    letter = PlainLetter(tuple(p for p in parts if p is not None), limits)
    templates: Templates = compile_templates(subject, text, html)
    try:
        want = templates.render(sample, limits)
    except TemplateError:  # the sandboxed render will name the problem
        return None
    got = [p.render(sample.email, sample.fields) for p in letter.parts]
    if got != [want.subject, want.text, *([want.html] if html is not None else [])]:
        return None
    return letter
