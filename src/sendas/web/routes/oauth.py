"""Sign in with Google / Microsoft from the browser: start (to the provider), the callback
(the alias is signed in, or a page says why not and that nothing changed), and the choice
of From address when the signed-in account differs from the alias's."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sendas.errors import NotFound
from sendas.oauth import (
    AccessDenied,
    IdTokenInvalid,
    InvalidState,
    NotConfigured,
    OAuthError,
    ProviderError,
    ProviderUnavailable,
)
from sendas.oauth.providers import PROVIDERS
from sendas.schemas.fields import form_id
from sendas.services import oauth_signin
from sendas.web.deps import Form, PageNotFound, WebActor, WebCtx, text
from sendas.web.render import flash, page, redirect

log = logging.getLogger(__name__)
router = APIRouter()

NOTHING_CHANGED = "Nothing was changed: the alias keeps its previous settings."


def _label(provider: str) -> str:
    spec = PROVIDERS.get(provider)  # type: ignore[call-overload]
    if spec is None:
        raise PageNotFound()
    return str(spec.label)


def _refused(
    request: Request, provider: str, title: str, message: str, status_code: int
) -> Response:
    return page(
        request,
        "oauth/refused.html",
        {
            "title": title,
            "message": message,
            "nothing_changed": NOTHING_CHANGED,
            "provider": provider,
            "label": _label(provider),
        },
        status_code=status_code,
    )


def _not_configured(request: Request, provider: str) -> Response:
    label = _label(provider)
    return _refused(
        request,
        provider,
        f"Sign in with {label} is not set up",
        f"An administrator has not registered the {label} application yet, so this "
        "service cannot send you there.",
        409,
    )


def _failure_page(request: Request, provider: str, exc: OAuthError) -> Response:
    """The page for a sign-in that did not go through (the cause in plain words)."""
    label = _label(provider)
    if isinstance(exc, NotConfigured):
        return _not_configured(request, provider)
    if isinstance(exc, AccessDenied):
        return _refused(
            request,
            provider,
            "Access was denied",
            f"You (or your organisation's policy) declined access at {label}. To send with "
            f"this account, start again and allow access to send mail.",
            403,
        )
    if isinstance(exc, InvalidState):
        return _refused(
            request,
            provider,
            "This sign-in link cannot be used",
            f"The answer from {label} does not belong to a sign-in you started here, or it "
            f"was used already, or it is too old ({exc}). Start the sign-in again from the "
            "alias.",
            400,
        )
    if isinstance(exc, IdTokenInvalid):
        return _refused(
            request,
            provider,
            "The sign-in could not be verified",
            f"{label}'s proof of identity (the ID token) did not pass the checks ({exc}). "
            "This may be a clock or configuration problem; try again, and tell an "
            "administrator if it persists.",
            400,
        )
    if isinstance(exc, ProviderUnavailable):
        return _refused(
            request,
            provider,
            f"{label} is not answering",
            f"{label}'s sign-in service could not be reached. Try again in a few minutes.",
            502,
        )
    if isinstance(exc, ProviderError):
        return _refused(
            request,
            provider,
            f"{label} refused the sign-in",
            f"{label} answered with an error ({exc.error}"
            + (f": {exc.description}" if exc.description else "")
            + "). Try again; if it keeps failing, an administrator should check the "
            "application's registration.",
            502,
        )
    return _refused(request, provider, "The sign-in failed", str(exc), 400)


@router.get("/oauth/{provider}/start")
async def oauth_start(
    request: Request, ctx: WebCtx, actor: WebActor, provider: str, alias_id: str = ""
) -> Response:
    """Send the browser to the provider to sign the alias in (no alias_id: a new alias)."""
    _label(provider)
    wanted = form_id(alias_id) if alias_id else None
    if alias_id and wanted is None:
        raise PageNotFound()
    try:
        url = await oauth_signin.begin_sign_in(ctx, actor, provider, wanted)
    except NotFound:
        raise PageNotFound() from None
    except OAuthError as exc:
        log.warning("sign-in with %s could not start: %s", provider, type(exc).__name__)
        return _failure_page(request, provider, exc)
    return RedirectResponse(url, status_code=303)


@router.get("/oauth/{provider}/callback")
async def oauth_callback(request: Request, ctx: WebCtx, actor: WebActor, provider: str) -> Response:
    """Where the provider sends the browser back: finish, or say why not."""
    _label(provider)
    params = {k: v for k, v in request.query_params.items()}
    try:
        done = await oauth_signin.finish_alias_sign_in(ctx, actor, provider, params)
    except NotFound:
        raise PageNotFound() from None
    except OAuthError as exc:
        log.warning("sign-in with %s refused: %s", provider, type(exc).__name__)
        return _failure_page(request, provider, exc)
    if done.kept_from is not None:
        return page(
            request,
            "oauth/choose_from.html",
            {"done": done, "provider": provider},
        )
    flash(request, f"Signed in with {done.label} as {done.email}.")
    if done.created:
        return RedirectResponse(f"/aliases/{done.alias_id}", status_code=303)
    return RedirectResponse("/aliases", status_code=303)


@router.post("/oauth/from")
def oauth_choose_from(request: Request, ctx: WebCtx, actor: WebActor, form: Form) -> Response:
    """The owner's choice after a sign-in with another address than the alias's From."""
    alias_id = form_id(text(form, "alias_id"))
    if alias_id is None:
        raise PageNotFound()
    use_signed_in = text(form, "from_choice") == "signed_in"
    try:
        alias = oauth_signin.choose_from(ctx, actor, alias_id, use_signed_in=use_signed_in)
    except NotFound:
        raise PageNotFound() from None
    flash(request, f"“{alias.description}” sends as {alias.from_address}.")
    return redirect(request, "/aliases")
