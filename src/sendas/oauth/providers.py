"""Google and Microsoft as OpenID Connect providers: discovery URLs, scopes, the SMTP and
IMAP servers an alias signed in with them uses, and the registered application
(:class:`ClientConfig`, from the ``oauth_clients`` row).

An access token opens the whole mailbox, so it goes only to the provider's servers
(:class:`BoundServers`): the provider's own, or the admin's override in the registration
(national clouds, a gateway, tests), fixed on the alias at sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import SecretStr
from sqlalchemy.orm import Session

from sendas.db.models import OAuthClient
from sendas.secrets import SecretBox
from sendas.smtp.endpoint import TlsMode

ProviderName = Literal["google", "microsoft"]
PROVIDER_NAMES: tuple[ProviderName, ...] = get_args(ProviderName)
DEFAULT_TENANT = "common"
# Microsoft's multi-tenant endpoints publish this issuer; the token's ``tid`` fills it in.
TENANT_PLACEHOLDER = "{tenantid}"


@dataclass(frozen=True)
class Provider:
    """What sendas needs to know about one sign-in provider."""

    name: ProviderName
    label: str
    discovery_template: str  # may contain ``{tenant}``
    scopes: tuple[str, ...]
    imap_scopes: tuple[str, ...]  # added when the alias copies to Sent through IMAP
    smtp_host: str
    smtp_port: int
    smtp_tls: TlsMode
    imap_host: str
    imap_port: int
    # Extra authorization request parameters (Google issues a refresh token only offline).
    authorize_params: tuple[tuple[str, str], ...] = ()
    # Microsoft wants the scope repeated on refresh; Google does not need it.
    refresh_sends_scope: bool = False
    # Google asserts email_verified; Microsoft's v2 ID token carries no such claim.
    requires_email_verified: bool = False

    def discovery_url(self, *, tenant: str | None = None, override: str | None = None) -> str:
        """The OpenID configuration URL: ``override`` (sovereign clouds, tests) or the
        provider's default; ``{tenant}`` in either is replaced (default ``common``)."""
        template = override or self.discovery_template
        return template.replace("{tenant}", tenant or DEFAULT_TENANT)

    def scope_list(self, *, imap: bool = False) -> list[str]:
        """The scopes to request; with ``imap`` also those for the copy to Sent."""
        return [*self.scopes, *(self.imap_scopes if imap else ())]

    def servers(self, smtp: str | None = None, imap: str | None = None) -> BoundServers:
        """The servers a signed-in alias uses: the provider's, or the ``host:port``
        overrides (same TLS as the provider's own: the token never crosses in clear).
        Raises ``ValueError`` for a malformed override."""
        smtp_host, smtp_port = _host_port(smtp, self.smtp_host, self.smtp_port)
        imap_host, imap_port = _host_port(imap, self.imap_host, self.imap_port)
        return BoundServers(self.name, smtp_host, smtp_port, self.smtp_tls, imap_host, imap_port)


def _host_port(text: str | None, host: str, port: int) -> tuple[str, int]:
    if not text:
        return host, port
    from sendas.smtp.endpoint import parse_server

    return parse_server(text, fallback_port=port)


def _same_host(a: str, b: str) -> bool:
    return a.lower().rstrip(".") == b.lower().rstrip(".")


@dataclass(frozen=True)
class BoundServers:
    """Where the tokens of an alias signed in with ``provider`` may be sent."""

    provider: ProviderName
    smtp_host: str
    smtp_port: int
    smtp_tls: TlsMode
    imap_host: str
    imap_port: int

    @property
    def label(self) -> str:
        return PROVIDERS[self.provider].label

    def to_json(self) -> dict[str, Any]:
        return {
            "smtp": [self.smtp_host, self.smtp_port, self.smtp_tls],
            "imap": [self.imap_host, self.imap_port],
        }

    @classmethod
    def of_alias(cls, provider: str, stored: dict[str, Any] | None) -> BoundServers:
        """The servers fixed at sign-in (``stored``), or the provider's own when none were
        stored (an alias signed in before overrides existed)."""
        spec = get_provider(provider)
        try:
            smtp_host, smtp_port, smtp_tls = (stored or {})["smtp"]
            imap_host, imap_port = (stored or {})["imap"]
        except (KeyError, TypeError, ValueError):
            return spec.servers()
        return cls(
            spec.name, str(smtp_host), int(smtp_port), smtp_tls, str(imap_host), int(imap_port)
        )

    def smtp_allows(self, host: str, port: int, tls: str) -> bool:
        return _same_host(host, self.smtp_host) and port == self.smtp_port and tls == self.smtp_tls

    def imap_allows(self, host: str, port: int, tls: str) -> bool:
        return _same_host(host, self.imap_host) and port == self.imap_port and tls != "none"

    def refusal(self) -> str:
        """Why a token will not go elsewhere, in words for the owner."""
        return (
            f"a signed-in alias sends through {self.label}'s server; "
            "sign in again or switch to a password"
        )


GOOGLE = Provider(
    name="google",
    label="Google",
    discovery_template="https://accounts.google.com/.well-known/openid-configuration",
    scopes=("openid", "email", "https://mail.google.com/"),
    imap_scopes=(),  # https://mail.google.com/ covers IMAP too
    smtp_host="smtp.gmail.com",
    smtp_port=465,
    smtp_tls="implicit",
    imap_host="imap.gmail.com",
    imap_port=993,
    authorize_params=(("access_type", "offline"), ("prompt", "consent")),
    requires_email_verified=True,
)

MICROSOFT = Provider(
    name="microsoft",
    label="Microsoft",
    discovery_template=(
        "https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration"
    ),
    scopes=("openid", "email", "offline_access", "https://outlook.office.com/SMTP.Send"),
    imap_scopes=("https://outlook.office.com/IMAP.AccessAsUser.All",),
    smtp_host="smtp.office365.com",
    smtp_port=587,
    smtp_tls="starttls",
    imap_host="outlook.office365.com",
    imap_port=993,
    authorize_params=(("prompt", "select_account"),),
    refresh_sends_scope=True,
)

PROVIDERS: dict[ProviderName, Provider] = {"google": GOOGLE, "microsoft": MICROSOFT}


def get_provider(name: str) -> Provider:
    """The provider called ``name``. Raises ``ValueError`` for an unknown name."""
    try:
        return PROVIDERS[name]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown sign-in provider {name!r}") from None


@dataclass(frozen=True)
class ClientConfig:
    """An application registered at a provider by the admin. The repr hides the secret."""

    provider: Provider
    client_id: str
    client_secret: SecretStr = field(repr=False)
    tenant: str = DEFAULT_TENANT
    discovery_url_override: str | None = None
    smtp_server_override: str | None = None
    imap_server_override: str | None = None

    @property
    def discovery_url(self) -> str:
        return self.provider.discovery_url(tenant=self.tenant, override=self.discovery_url_override)

    @property
    def servers(self) -> BoundServers:
        """The servers an alias signed in through this app sends through."""
        return self.provider.servers(self.smtp_server_override, self.imap_server_override)


def load_client(session: Session, provider: str, box: SecretBox) -> ClientConfig | None:
    """The registered application for ``provider``, or ``None`` until the admin registers one
    (or when its secret is missing)."""
    spec = get_provider(provider)
    row = session.get(OAuthClient, spec.name)
    if row is None or not row.client_id or not row.client_secret_enc:
        return None
    return ClientConfig(
        provider=spec,
        client_id=row.client_id,
        client_secret=box.decrypt(row.client_secret_enc),
        tenant=(row.tenant or DEFAULT_TENANT) if spec.name == "microsoft" else DEFAULT_TENANT,
        discovery_url_override=row.discovery_url or None,
        smtp_server_override=row.smtp_server or None,
        imap_server_override=row.imap_server or None,
    )


def save_client(
    session: Session,
    provider: str,
    box: SecretBox,
    *,
    client_id: str,
    client_secret: SecretStr | None,
    tenant: str | None = None,
    discovery_url: str | None = None,
    smtp_server: str | None = None,
    imap_server: str | None = None,
) -> OAuthClient:
    """Create or update the registration; ``client_secret=None`` keeps the stored one
    (write-only field). ``tenant`` is kept for Microsoft only (default ``common``);
    ``smtp_server`` / ``imap_server`` (``host:port``) replace the provider's servers."""
    spec = get_provider(provider)
    row = session.get(OAuthClient, spec.name)
    if row is None:
        row = OAuthClient(provider=spec.name)
        session.add(row)
    row.client_id = client_id
    if client_secret is not None:
        row.client_secret_enc = box.encrypt(client_secret)
    row.tenant = (tenant or DEFAULT_TENANT) if spec.name == "microsoft" else None
    row.discovery_url = discovery_url or None
    row.smtp_server = smtp_server or None
    row.imap_server = imap_server or None
    return row
