"""Sign in with Google / Microsoft for an alias: start (the provider's URL, the pending
request kept server-side) and finish (the callback: the alias sends as the signed-in
account from then on, and mail waiting for a reconnect goes out by itself).

Nothing changes until the whole callback checks out: a wrong, used, expired or foreign
``state``, a refusal at the provider and an ID token that fails validation all raise before
the alias is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from sendas.context import AppContext
from sendas.db.models import Alias
from sendas.errors import NotFound, ValidationFailed
from sendas.oauth import (
    ClientConfig,
    InvalidState,
    NotConfigured,
    SignInResult,
    apply_sign_in,
    finish_sign_in,
    load_client,
    start_sign_in,
)
from sendas.oauth.pending import save_pending, take_pending
from sendas.outbox.lanes import resume_after_sign_in
from sendas.schemas import AliasCreate
from sendas.services import aliases as alias_service
from sendas.services.common import Actor, audit
from sendas.services.oauth_clients import provider_or_404, redirect_uri


@dataclass(frozen=True)
class SignedIn:
    """A finished sign-in. ``kept_from`` is the alias's own From address when it differs
    from the signed-in ``email`` (the owner chooses which one to keep)."""

    alias_id: int
    provider: str
    label: str
    email: str
    created: bool
    kept_from: str | None


def _client(ctx: AppContext, provider: str) -> ClientConfig:
    with ctx.db.read() as s:
        client = load_client(s, provider, ctx.secrets)
    if client is None:
        raise NotConfigured(provider)
    return client


async def begin_sign_in(ctx: AppContext, actor: Actor, provider: str, alias_id: int | None) -> str:
    """The provider's authorization URL for the actor's alias (``None``: a new alias).

    Raises NotFound (unknown provider, another user's alias), NotConfigured,
    ProviderUnavailable / ProviderError (the provider's configuration cannot be read).
    """
    spec = provider_or_404(provider)
    imap = False
    if alias_id is not None:
        with ctx.db.read() as s:
            alias = alias_service.get_alias(s, actor, alias_id)
            imap = alias.imap_account_id is not None  # the copy to Sent needs IMAP's scope
    client = _client(ctx, spec.name)
    url, pending = await start_sign_in(
        client,
        redirect_uri=redirect_uri(ctx.settings.base_url, spec.name),
        user_id=actor.id,
        alias_id=alias_id,
        imap=imap,
    )
    with ctx.db.write() as s:
        save_pending(s, pending, ctx.secrets)
    return url


async def finish_alias_sign_in(
    ctx: AppContext, actor: Actor, provider: str, params: dict[str, str]
) -> SignedIn:
    """Finish the sign-in from the callback's query parameters.

    The pending request is used up first (committed), so a state works once. Raises
    InvalidState, AccessDenied, ProviderError, ProviderUnavailable, IdTokenInvalid,
    NotConfigured (nothing changed in each case), NotFound (unknown provider).
    """
    spec = provider_or_404(provider)
    with ctx.db.write() as s:
        pending = take_pending(s, params.get("state", ""), ctx.secrets, user_id=actor.id)
    if pending.provider != spec.name:
        raise InvalidState("the sign-in request was for another provider")
    result = await finish_sign_in(_client(ctx, spec.name), pending, params)
    with ctx.db.write() as s:
        if pending.alias_id is None:
            alias, created = _new_alias(s, actor, result, ctx), True
        else:
            try:
                alias, created = alias_service.get_alias(s, actor, pending.alias_id), False
            except NotFound:
                raise InvalidState("the alias of this sign-in no longer exists") from None
        differs = apply_sign_in(alias, result, ctx.secrets)
        s.flush()
        resume_after_sign_in(s, alias.id)
        audit(
            s,
            actor,
            "alias.oauth_sign_in",
            "alias",
            alias.id,
            owner_id=actor.id,
            detail={"provider": spec.name, "created": created},
        )
        return SignedIn(
            alias.id,
            spec.name,
            spec.label,
            result.email,
            created,
            alias.from_address if differs else None,
        )


def _new_alias(session: Session, actor: Actor, result: SignInResult, ctx: AppContext) -> Alias:
    """An alias made from the sign-in: "Google (ann@example.com)", numbered if taken."""
    label = "Google" if result.provider == "google" else "Microsoft"
    base = f"{label} ({result.email})"
    for n in range(1, 100):
        description = base if n == 1 else f"{base} {n}"
        try:
            data = AliasCreate(
                description=description, from_address=result.email, auth=result.provider
            )
            alias, _ = alias_service.create_alias(session, actor, data, ctx.secrets)
            return alias
        except ValidationFailed as exc:
            if not any(p.loc[-1] == "description" for p in exc.problems):
                raise
    raise ValidationFailed.one("description", "too many aliases with this description")


def choose_from(ctx: AppContext, actor: Actor, alias_id: int, *, use_signed_in: bool) -> Alias:
    """After a sign-in whose account differs from the alias's From address: keep the From
    address, or use the signed-in account's (the user name the sign-in set)."""
    with ctx.db.write() as s:
        alias = alias_service.get_alias(s, actor, alias_id)
        if use_signed_in and alias.auth != "password" and alias.smtp_username:
            alias.from_address = alias.smtp_username
            audit(
                s,
                actor,
                "alias.update",
                "alias",
                alias.id,
                owner_id=actor.id,
                detail={"fields": ["from_address"]},
            )
        s.flush()
        s.expunge(alias)
        return alias
