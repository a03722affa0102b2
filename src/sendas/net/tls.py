"""The one TLS client context factory, for SMTP and IMAP alike.

Verification is always on. Trust is the platform's: the system store, ``SSL_CERT_FILE``
(and ``SSL_CERT_DIR``) when set, plus, for a private server, the account's own CA bundle.
TLS 1.2 is the minimum.
"""

from __future__ import annotations

import os
import ssl


def client_context(ca_bundle_pem: str | None = None) -> ssl.SSLContext:
    """A verifying client context (hostname checked, TLS 1.2 or newer).

    Raises ``ValueError`` naming the problem when ``ca_bundle_pem`` holds no usable
    certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    # OpenSSL reads SSL_CERT_FILE itself; loading it again keeps it working when the
    # platform's default paths were compiled differently.
    cafile = os.environ.get("SSL_CERT_FILE")
    if cafile and os.path.isfile(cafile):
        context.load_verify_locations(cafile=cafile)
    if ca_bundle_pem and ca_bundle_pem.strip():
        try:
            context.load_verify_locations(cadata=ca_bundle_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(
                "the CA bundle is not valid PEM: no certificate could be read"
            ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
