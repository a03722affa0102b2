"""TLS client contexts. Verification is always on: the system trust store (which honours
``SSL_CERT_FILE``/``SSL_CERT_DIR``) plus, for a private server, the alias's own CA bundle."""

from __future__ import annotations

import ssl


def client_context(ca_bundle_pem: str | None = None) -> ssl.SSLContext:
    """A verifying client context; raises ``ValueError`` if the PEM bundle cannot be read."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_bundle_pem:
        try:
            context.load_verify_locations(cadata=ca_bundle_pem)
        except ssl.SSLError as exc:
            raise ValueError("the alias's CA bundle is not valid PEM") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
