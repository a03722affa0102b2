"""Where and how to reach an IMAP account: :class:`ImapEndpoint`."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import SecretStr

from sendas.net.policy import OutboundPolicy
from sendas.net.tls import client_context
from sendas.net.tls_modes import DETECT_WAIT, IMAP_GREETING_PORTS

if TYPE_CHECKING:
    from sendas.db.models import ImapAccount
    from sendas.smtp.endpoint import TokenProvider

TlsMode = Literal["auto", "implicit", "starttls", "none"]
ResolvedTlsMode = Literal["implicit", "starttls", "none"]

IMAPS_PORT = 993
IMAP_PORT = 143


@dataclass(frozen=True)
class ImapEndpoint:
    """One IMAP account's connection settings. Its repr never shows the password.

    ``tls``: ``auto`` means implicit TLS on port 993; on any other port a server that greets
    gets STARTTLS and a silent one implicit TLS (:attr:`detects_tls`); ``none``
    is plain text (the password is then only sent when ``allow_plaintext_password`` is set).
    ``ca_bundle_pem`` adds trusted CA certificates (PEM) to the system store, for a private
    server. ``sent_folder`` names the Sent folder and disables discovery.
    ``token_provider`` (the one the SMTP side uses for a signed-in alias) makes the login
    XOAUTH2 with its access token instead of the password.

    Raises ``ValueError`` for a malformed or contradictory setting.
    """

    host: str
    port: int
    username: str
    password: SecretStr = field(repr=False)
    tls: TlsMode = "auto"
    ca_bundle_pem: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    sent_folder: str | None = None
    allow_plaintext_password: bool = False
    token_provider: TokenProvider | None = field(default=None, repr=False, compare=False)
    outbound: OutboundPolicy | None = field(default=None, repr=False)
    """The addresses this account may reach (from settings); None checks nothing."""
    # How long ``auto`` waits for a greeting before speaking TLS to a silent server.
    detect_wait: float = DETECT_WAIT

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ValueError("host must be a host name or an IP address")
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be between 1 and 65535")
        if self.tls not in get_args(TlsMode):
            raise ValueError(f"tls must be one of {', '.join(get_args(TlsMode))}")
        if not self.timeout > 0 or not self.detect_wait > 0:
            raise ValueError("timeout and detect_wait must be positive")
        if not isinstance(self.password, SecretStr):
            raise ValueError("password must be a SecretStr")
        for name in ("username", "sent_folder"):
            value = getattr(self, name)
            if value is not None and ("\r" in value or "\n" in value or "\0" in value):
                raise ValueError(f"{name} must not contain line breaks")
        if self.sent_folder is not None and not self.sent_folder.strip():
            raise ValueError("sent_folder must not be blank (use None to find it)")

    @property
    def tls_mode(self) -> ResolvedTlsMode:
        """The TLS mode actually used (``auto`` resolved by port)."""
        if self.tls == "auto":
            return "implicit" if self.port == IMAPS_PORT else "starttls"
        return self.tls

    @property
    def uses_xoauth2(self) -> bool:
        """True when the login is XOAUTH2 with an access token (a signed-in alias's)."""
        return self.token_provider is not None

    @property
    def detects_tls(self) -> bool:
        """``auto`` on a port that is neither 993 nor 143: a greeting means STARTTLS, silence
        TLS."""
        return self.tls == "auto" and self.port not in (IMAPS_PORT, *IMAP_GREETING_PORTS)

    @property
    def connect_host(self) -> str:
        """The host without IPv6 brackets."""
        return (
            self.host[1:-1] if self.host.startswith("[") and self.host.endswith("]") else self.host
        )

    @classmethod
    def for_account(
        cls,
        account: ImapAccount,
        password: SecretStr,
        *,
        timeout: float = 30.0,
        allow_plaintext_password: bool = False,
        token_provider: TokenProvider | None = None,
        outbound: OutboundPolicy | None = None,
        detect_wait: float = DETECT_WAIT,
    ) -> ImapEndpoint:
        """The endpoint of a stored IMAP account (its password decrypted by the caller;
        with ``token_provider`` it signs in with XOAUTH2 instead)."""
        tls = account.tls if account.tls in get_args(TlsMode) else "auto"
        return cls(
            host=account.imap_host,
            port=account.imap_port,
            username=account.username,
            password=password,
            tls=tls,  # type: ignore[arg-type]  # checked just above
            ca_bundle_pem=account.ca_bundle or None,
            timeout=timeout,
            sent_folder=account.sent_folder or None,
            allow_plaintext_password=allow_plaintext_password,
            token_provider=token_provider,
            outbound=outbound,
            detect_wait=detect_wait,
        )


def tls_context(ca_bundle_pem: str | None) -> ssl.SSLContext:
    """A verifying client context: the system store, ``SSL_CERT_FILE``, the account's CAs,
    TLS 1.2 or newer (:func:`sendas.net.tls.client_context`).

    Raises ``ValueError`` when ``ca_bundle_pem`` holds no usable certificate.
    """
    return client_context(ca_bundle_pem)
