"""Sign in with Google / Microsoft: the registered applications (admin)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
)

from sendas.schemas.fields import Strict, header_safe

# --- Sign in with Google / Microsoft: the registered applications (admin) -------------------

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,199}")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def check_tenant(value: str | None) -> str | None:
    """``common``, ``organizations``, ``consumers``, a tenant id (GUID) or a domain."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _TENANT.fullmatch(value):
        raise ValueError("must be common, organizations, consumers, a tenant ID or a domain")
    return value


def check_discovery_url(value: str | None) -> str | None:
    """An https URL (http only on this machine's loopback address, for tests)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    header_safe(value)
    scheme, _, rest = value.partition("://")
    host = (
        rest.split("/", 1)[0].rsplit(":", 1)[0]
        if not rest.startswith("[")
        else (rest.split("]", 1)[0] + "]")
    )
    if not rest or " " in value:
        raise ValueError("must be a URL such as https://login.example.com/.../openid-configuration")
    if scheme == "https" or (scheme == "http" and host in _LOOPBACK_HOSTS):
        return value
    raise ValueError("must start with https://")


_SERVER = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]{1,5})"
)


def check_server_override(value: str | None) -> str | None:
    """``host:port`` of a server that replaces the provider's (empty: the provider's)."""
    if value is None or not value.strip():
        return None
    found = _SERVER.fullmatch(value.strip())
    if found is None or not 1 <= int(found["port"]) <= 65535:
        raise ValueError("enter host:port, e.g. smtp.gateway.example:587 ([::1]:587 for IPv6)")
    return found.group(0)


_ServerOverride = Annotated[
    str | None, StringConstraints(max_length=300), AfterValidator(check_server_override)
]


class OAuthClientIn(Strict):
    """PUT /api/system/oauth/{provider}: the application registered at Google or Microsoft.

    ``client_secret`` left out keeps the stored one (it is write-only); ``tenant`` applies to
    Microsoft only (default ``common``); ``discovery_url`` left out uses the provider's own
    OpenID configuration URL. ``smtp_server`` / ``imap_server`` (``host:port``) replace the
    provider's servers for aliases signed in from then on (national clouds, a gateway,
    tests), with the provider's TLS mode; a signed-in alias's token goes only there.
    """

    client_id: Annotated[
        str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)
    ]
    client_secret: Annotated[SecretStr, Field(min_length=1, max_length=2000)] | None = None
    tenant: Annotated[str | None, AfterValidator(check_tenant)] = None
    discovery_url: Annotated[
        str | None, StringConstraints(max_length=1000), AfterValidator(check_discovery_url)
    ] = None
    smtp_server: _ServerOverride = None
    imap_server: _ServerOverride = None

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        if not v:
            raise ValueError("is required")
        return header_safe(v)


class OAuthClientOut(BaseModel):
    """A provider's registration as the admin sees it: never the secret itself."""

    provider: Literal["google", "microsoft"]
    label: str
    configured: bool
    client_id: str
    client_secret_set: bool
    tenant: str | None
    discovery_url: str | None
    smtp_server: str | None  # the override; None: the provider's own (``*_default``)
    imap_server: str | None
    smtp_server_default: str
    imap_server_default: str
    redirect_uri: str
    scopes: list[str]
    imap_scopes: list[str]
    updated_at: datetime | None
