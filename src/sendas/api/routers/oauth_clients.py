"""The applications registered for Sign in with Google / Microsoft (admin):
/api/system/oauth/{provider}."""

from __future__ import annotations

from fastapi import APIRouter

from sendas.api.deps import AdminDep, CtxDep
from sendas.schemas import OAuthClientIn, OAuthClientOut
from sendas.services import oauth_clients as svc

router = APIRouter(prefix="/system/oauth", tags=["system"])


@router.get("")
def list_oauth_clients(ctx: CtxDep, actor: AdminDep) -> list[OAuthClientOut]:
    with ctx.db.read() as s:
        return svc.list_clients(s, ctx.settings.base_url)


@router.get("/{provider}")
def get_oauth_client(ctx: CtxDep, actor: AdminDep, provider: str) -> OAuthClientOut:
    """The registration, the redirect URI to register at the provider and the scopes."""
    svc.provider_or_404(provider)
    with ctx.db.read() as s:
        return svc.client_out(s, provider, ctx.settings.base_url)


@router.put("/{provider}")
def put_oauth_client(
    ctx: CtxDep, actor: AdminDep, provider: str, body: OAuthClientIn
) -> OAuthClientOut:
    """Register or change the application (``client_secret`` left out keeps the stored one)."""
    svc.provider_or_404(provider)
    with ctx.db.write() as s:
        svc.configure_client(s, actor, provider, body, ctx.secrets)
    with ctx.db.read() as s:
        return svc.client_out(s, provider, ctx.settings.base_url)
