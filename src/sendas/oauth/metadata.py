"""The provider's OpenID configuration and signing keys, fetched over HTTPS and cached for a
while in the process (both change rarely; an unknown key id triggers one refetch)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.jwk import KeySet

from sendas.oauth.errors import ProviderError, ProviderUnavailable

CACHE_SECONDS = 3600.0
HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of an OpenID configuration document sendas uses."""

    issuer: str  # Microsoft's multi-tenant issuer holds ``{tenantid}``
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    revocation_endpoint: str | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ProviderMetadata:
        try:
            return cls(
                issuer=str(doc["issuer"]),
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                revocation_endpoint=doc.get("revocation_endpoint"),
            )
        except KeyError as exc:
            raise ProviderError(
                "invalid_configuration", f"the OpenID configuration lacks {exc.args[0]}"
            ) from None


_documents: dict[str, tuple[float, dict[str, Any]]] = {}


async def _get_json(http: httpx.AsyncClient, url: str, *, fresh: bool) -> dict[str, Any]:
    cached = _documents.get(url)
    if cached and not fresh and cached[0] > time.monotonic():
        return cached[1]
    try:
        resp = await http.get(url, timeout=HTTP_TIMEOUT)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(
            f"the provider could not be reached ({type(exc).__name__})"
        ) from exc
    if resp.status_code >= 500:
        raise ProviderUnavailable(
            f"the provider answered {resp.status_code}", status=resp.status_code
        )
    if resp.status_code != 200:
        raise ProviderError("invalid_configuration", f"{url} answered {resp.status_code}")
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ProviderError("invalid_configuration", f"{url} did not answer a JSON object")
    _documents[url] = (time.monotonic() + CACHE_SECONDS, doc)
    return doc


async def fetch_metadata(http: httpx.AsyncClient, discovery_url: str) -> ProviderMetadata:
    """The OpenID configuration at ``discovery_url`` (cached). Raises ProviderUnavailable
    (unreachable, 5xx) or ProviderError (not a usable document)."""
    return ProviderMetadata.from_document(await _get_json(http, discovery_url, fresh=False))


async def fetch_jwks(http: httpx.AsyncClient, jwks_uri: str, *, fresh: bool = False) -> KeySet:
    """The provider's public signing keys (cached; ``fresh`` refetches)."""
    doc = await _get_json(http, jwks_uri, fresh=fresh)
    try:
        return KeySet.import_key_set(doc)  # type: ignore[arg-type]
    except Exception as exc:  # joserfc raises several types for a malformed set
        raise ProviderError("invalid_configuration", "the provider's JWKS is malformed") from exc


def clear_cache() -> None:
    """Forget cached documents (tests; an admin who changed the discovery URL)."""
    _documents.clear()
