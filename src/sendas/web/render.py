"""Templates, the per-request page context, flash messages and form-error mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError

from sendas.errors import RateLimited, ValidationFailed
from sendas.net.tls_modes import tls_label
from sendas.statuses import CampaignStatus, MessageStatus
from sendas.units import byte_size
from sendas.validation import field_problems
from sendas.web.help import step_help_url
from sendas.web.security import new_csrf_token

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(value: Any) -> Markup | str:
    """A timestamp as the UI shows it: ``<time datetime="2024-05-01T14:03:00Z">2024-05-01
    14:03 UTC</time>``; app.js rewrites the text in the viewer's time zone, the UTC text
    stays for pages read without scripts."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        moment = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        shown = moment.strftime("%Y-%m-%d %H:%M UTC")
        return Markup('<time datetime="{}">{}</time>').format(iso, shown)
    return str(value)


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["filesize"] = byte_size
STATUS_LABELS: dict[str, str] = {s: s.value.capitalize() for s in (*MessageStatus, *CampaignStatus)}
TEMPLATES.env.globals["status_labels"] = STATUS_LABELS
TEMPLATES.env.globals["tls_label"] = tls_label
TEMPLATES.env.globals["step_help_url"] = step_help_url


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = new_csrf_token()
        request.session["csrf"] = token
    return str(token)


def flash(request: Request, text: str, kind: str = "ok") -> None:
    messages = list(request.session.get("flash", []))
    messages.append({"text": text, "kind": kind})
    request.session["flash"] = messages


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    user: Any = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a template with what every page needs (user, CSRF token, flash messages)."""
    ctx: dict[str, Any] = {
        "request": request,
        "user": user if user is not None else getattr(request.state, "web_user", None),
        "csrf": csrf_token(request),
        "flashes": [] if _is_fragment(request) else request.session.pop("flash", []),
        "path": request.url.path,
    }
    ctx.update(context or {})
    return TEMPLATES.TemplateResponse(
        request, template, ctx, status_code=status_code, headers=headers
    )


def _is_fragment(request: Request) -> bool:
    """htmx fragments leave flash messages for the next full page."""
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-boosted")


def redirect(request: Request, url: str) -> Response:
    """After a successful POST: htmx follows ``HX-Redirect``, a plain form a 303."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def is_htmx(request: Request) -> bool:
    return bool(request.headers.get("hx-request"))


def field_errors(exc: ValidationFailed | ValidationError) -> dict[str, str]:
    """One message per field name, from our 422 problems or a pydantic error."""
    problems = exc.problems if isinstance(exc, ValidationFailed) else field_problems(exc)
    out: dict[str, str] = {}
    for problem in problems:
        parts = [str(p) for p in problem.loc if p != "body"]
        out.setdefault(parts[0] if parts else "_form", problem.msg)
    return out


def form_errors(
    request: Request,
    errors: dict[str, str],
    fields: Any,
    refused: RateLimited | None = None,
    *,
    not_done: str = "Not sent",
) -> Response:
    """The htmx answer to a form that was not accepted: the errors at their ``fields``, with
    422 (or 429 and ``Retry-After`` when a per-user limit refused it); ``not_done`` says what
    did not happen ("Not sent", "Not saved")."""
    status_code, headers = refused_status(refused)
    return page(
        request,
        "_form_errors.html",
        {"errors": errors, "fields": fields, "not_done": not_done},
        status_code=status_code,
        headers=headers,
    )


def refused_status(refused: RateLimited | None) -> tuple[int, dict[str, str] | None]:
    """A form's error status: 429 with ``Retry-After`` past a per-user limit, else 422."""
    if refused is None:
        return 422, None
    return 429, {"Retry-After": str(refused.retry_after)}
