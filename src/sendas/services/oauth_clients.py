"""The applications registered at Google and Microsoft for "Sign in with ..." (admin only):
one per provider, shared by the API, the admin page and ``sendas oauth``."""

from __future__ import annotations

from sqlalchemy.orm import Session

from sendas.db.models import OAuthClient
from sendas.errors import NotFound, ValidationFailed
from sendas.oauth.metadata import clear_cache
from sendas.oauth.providers import PROVIDER_NAMES, Provider, get_provider, save_client
from sendas.schemas import OAuthClientIn, OAuthClientOut
from sendas.secrets import SecretBox
from sendas.services.common import Actor, audit, format_server


def provider_or_404(name: str) -> Provider:
    """The provider called ``name``; anything else is NotFound (a 404, like a bad path)."""
    try:
        return get_provider(name)
    except ValueError:
        raise NotFound("sign-in provider", name) from None


def redirect_uri(base_url: str, provider: str) -> str:
    """The callback URL to register at the provider, from ``SENDAS_BASE_URL``."""
    return f"{base_url.rstrip('/')}/oauth/{provider}/callback"


def is_configured(session: Session, provider: str) -> bool:
    row = session.get(OAuthClient, provider)
    return row is not None and bool(row.client_id and row.client_secret_enc)


def client_out(session: Session, provider: str, base_url: str) -> OAuthClientOut:
    """The registration as shown to the admin (also before there is one)."""
    spec = provider_or_404(provider)
    row = session.get(OAuthClient, spec.name)
    smtp = row.smtp_server if row else None
    imap = row.imap_server if row else None
    return OAuthClientOut(
        provider=spec.name,
        label=spec.label,
        configured=is_configured(session, spec.name),
        client_id=row.client_id if row else "",
        client_secret_set=bool(row and row.client_secret_enc),
        tenant=(row.tenant if row else None) or ("common" if spec.name == "microsoft" else None),
        discovery_url=row.discovery_url if row else None,
        smtp_server=smtp,
        imap_server=imap,
        smtp_server_default=format_server(spec.smtp_host, spec.smtp_port),
        imap_server_default=format_server(spec.imap_host, spec.imap_port),
        redirect_uri=redirect_uri(base_url, spec.name),
        scopes=list(spec.scopes),
        imap_scopes=list(spec.imap_scopes),
        updated_at=row.updated_at if row else None,
    )


def list_clients(session: Session, base_url: str) -> list[OAuthClientOut]:
    return [client_out(session, name, base_url) for name in PROVIDER_NAMES]


def configure_client(
    session: Session, actor: Actor, provider: str, data: OAuthClientIn, box: SecretBox
) -> OAuthClient:
    """Register (or change) the application for ``provider``. The secret left out keeps
    the stored one; a first registration needs it. Raises ValidationFailed, Forbidden."""
    actor.require_admin()
    spec = provider_or_404(provider)
    if data.tenant and spec.name != "microsoft":
        raise ValidationFailed.one("tenant", "applies to Microsoft only")
    if data.client_secret is None and not is_configured(session, spec.name):
        raise ValidationFailed.one("client_secret", "is required for the first registration")
    row = save_client(
        session,
        spec.name,
        box,
        client_id=data.client_id,
        client_secret=data.client_secret,
        tenant=data.tenant,
        discovery_url=data.discovery_url,
        smtp_server=data.smtp_server,
        imap_server=data.imap_server,
    )
    session.flush()
    # Another tenant or discovery URL means other metadata and keys: read them afresh.
    # (Aliases already signed in keep the servers of their sign-in: see BoundServers.)
    clear_cache()
    audit(
        session,
        actor,
        "oauth_client.update",
        "oauth_client",
        None,
        owner_id=None,
        detail={"provider": spec.name, "fields": sorted(data.model_fields_set)},
    )
    return row
