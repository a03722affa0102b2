"""Where and how to reach one SMTP server: :class:`SmtpEndpoint`, and parsing of the
``smtp_server`` field (``host``, ``host:port``, ``[IPv6]:port``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import idna
from pydantic import SecretStr

from sendas.net.policy import OutboundPolicy
from sendas.net.tls_modes import AUTO, DETECT_WAIT, IMPLICIT, SMTP_GREETING_PORTS, STARTTLS

TlsMode = Literal["auto", "implicit", "starttls", "none"]
EffectiveTls = Literal["implicit", "starttls", "none"]
AuthKind = Literal["password", "google", "microsoft"]

TokenProvider = Callable[[bool], Awaitable[str]]
"""``async (force_refresh: bool) -> access token``. Called with ``False`` first; called once
more with ``True`` when the server rejects the token (nodemailer's refresh-once rule)."""

TLS_MODES: tuple[TlsMode, ...] = ("auto", "implicit", "starttls", "none")
AUTH_KINDS: tuple[AuthKind, ...] = ("password", "google", "microsoft")
IMPLICIT_TLS_PORT = 465
SUBMISSION_PORT = 587
PLAIN_SMTP_PORT = 25

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_PEM_MARKER = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class SmtpEndpoint:
    """Everything the transport needs to open an authenticated session.

    Raises ``ValueError`` for conflicting or malformed options. The repr never shows the
    password, the token provider or the CA bundle.
    """

    host: str
    port: int
    tls: TlsMode = "auto"
    username: str = ""
    password: SecretStr | None = field(default=None, repr=False)
    auth: AuthKind = "password"
    token_provider: TokenProvider | None = field(default=None, repr=False, compare=False)
    ca_bundle_pem: str | None = field(default=None, repr=False)
    allow_plaintext_auth: bool = False
    timeout: float = 30.0
    local_hostname: str | None = None
    outbound: OutboundPolicy | None = field(default=None, repr=False)
    """The addresses an alias may reach (from settings); None checks nothing: the
    administrator's database outgoing settings are exempt."""
    # How long ``auto`` waits for a greeting before speaking TLS to a silent server.
    detect_wait: float = DETECT_WAIT

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ValueError("the SMTP host is empty or contains spaces")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 1-65535")
        if self.tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}")
        if self.auth not in AUTH_KINDS:
            raise ValueError(f"auth must be one of {', '.join(AUTH_KINDS)}")
        if not self.timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if not self.detect_wait > 0:
            raise ValueError("detect_wait must be a positive number of seconds")
        if _has_line_break(self.username) or _has_line_break(self.local_hostname or ""):
            raise ValueError("user name and local host name may not contain line breaks")
        if self.local_hostname is not None and (
            not self.local_hostname or " " in self.local_hostname
        ):
            raise ValueError("local_hostname must be a host name without spaces")
        self._check_credentials()
        # A CA bundle with TLS off is kept but unused: a stored alias must stay usable when
        # its owner ticks "Disable SSL/TLS" without clearing the bundle.
        if self.ca_bundle_pem is not None and _PEM_MARKER not in self.ca_bundle_pem:
            raise ValueError("the CA bundle must be PEM text with a BEGIN CERTIFICATE block")

    def _check_credentials(self) -> None:
        if self.auth == "password":
            if self.token_provider is not None:
                raise ValueError("a token provider is only used with Google or Microsoft sign-in")
            if self.password is not None and not self.username:
                raise ValueError("a password needs a user name")
            return
        if self.token_provider is None:
            raise ValueError(f"{self.auth} sign-in (XOAUTH2) needs a token provider")
        if self.password is not None:
            raise ValueError(f"{self.auth} sign-in uses a token, not a password")
        if not self.username:
            raise ValueError(f"{self.auth} sign-in needs the mailbox address as user name")

    @property
    def effective_tls(self) -> EffectiveTls:
        """``auto`` before detection: implicit TLS on 465, STARTTLS on any other port
        (where :attr:`detects_tls` lets the server's first move decide)."""
        if self.tls == "auto":
            return "implicit" if self.port == IMPLICIT_TLS_PORT else "starttls"
        return self.tls

    @property
    def detects_tls(self) -> bool:
        """``auto`` on a port that is neither 465 nor a usual plain one: a greeting means
        STARTTLS, silence TLS."""
        return self.tls == "auto" and self.port not in (IMPLICIT_TLS_PORT, *SMTP_GREETING_PORTS)

    @property
    def uses_xoauth2(self) -> bool:
        return self.auth != "password"

    @property
    def has_credentials(self) -> bool:
        """False for an anonymous relay (no password and no sign-in): AUTH is skipped."""
        return self.uses_xoauth2 or self.password is not None


def _has_line_break(text: str) -> bool:
    return "\r" in text or "\n" in text


def default_port(tls: TlsMode) -> int:
    """The usual port for a TLS mode: 465 implicit, 25 without TLS, 587 otherwise."""
    if tls == "implicit":
        return IMPLICIT_TLS_PORT
    if tls == "none":
        return PLAIN_SMTP_PORT
    return SUBMISSION_PORT


def parse_server(
    text: str, tls: TlsMode = "auto", *, fallback_port: int | None = None
) -> tuple[str, int]:
    """Parse the ``smtp_server`` field into ``(host, port)``.

    Accepts DNS names (also internationalized ones), IPv4, ``[IPv6]`` and a bare IPv6
    address, each with an optional ``:port``; without a port, the port follows ``tls``
    (or is ``fallback_port`` when given, e.g. for IMAP).
    Raises ``ValueError`` with a message meant for the person who typed the value.
    """
    value = text.strip()
    if not value:
        raise ValueError("enter the SMTP server as host or host:port, e.g. smtp.example.com:587")
    if "://" in value or "/" in value:
        raise ValueError("enter only the host name and port, without smtp:// or a path")
    if any(c.isspace() for c in value):
        raise ValueError("the SMTP server may not contain spaces")
    if "@" in value:
        raise ValueError("enter the server's host name, not an email address")

    host, port_text = _split_host_port(value)
    if port_text is None:
        return host, fallback_port or default_port(tls)
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f"the port '{port_text}' must be a number, e.g. 587")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"the port {port} is outside 1-65535")
    return host, port


def _split_host_port(value: str) -> tuple[str, str | None]:
    """``(host, port text or None)`` from ``host``, ``host:port``, ``[IPv6]:port`` or a
    bare IPv6 address; the host is checked."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("an IPv6 address needs a closing bracket, e.g. [2001:db8::1]:587")
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("after ] only :port may follow, e.g. [2001:db8::1]:587")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{host}' is not a valid IPv6 address") from None
        return host, (rest[1:] if rest else None)
    if value.count(":") > 1:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError(
                "write an IPv6 address in brackets when giving a port, e.g. [2001:db8::1]:587"
            ) from None
        return value, None
    host, sep, port_text = value.partition(":")
    return _check_host_name(host), (port_text if sep else None)


def _check_host_name(host: str) -> str:
    host = host.rstrip(".").lower()
    if not host:
        raise ValueError("the host name is missing before the port")
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"'{host}' is not a valid IPv4 address") from None
    try:
        ascii_host = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise ValueError(f"'{host}' is not a valid host name") from None
    if len(ascii_host) > 253:
        raise ValueError("the host name is longer than 253 characters")
    for label in ascii_host.split("."):
        if not _LABEL.match(label):
            raise ValueError(
                f"'{host}' is not a valid host name: use letters, digits, dots and hyphens"
            )
    return host


_INCOMING_PREFIXES = ("imap.", "imap4.", "pop.", "pop3.")


def server_warnings(host: str, port: int | None = None, tls: TlsMode | None = None) -> list[str]:
    """Advice that does not block saving: an incoming-mail host in the SMTP field, or a TLS
    mode that does not match the usual use of the port."""
    warnings: list[str] = []
    lowered = host.lower()
    for prefix in _INCOMING_PREFIXES:
        if lowered.startswith(prefix):
            suggestion = "smtp." + host[len(prefix) :]
            warnings.append(
                f"'{host}' looks like a server for incoming mail (IMAP/POP). Outgoing mail "
                f"usually goes to an SMTP server such as '{suggestion}'."
            )
            break
    if port == IMPLICIT_TLS_PORT and tls in ("starttls", "none"):
        warnings.append(
            f"Port 465 normally expects SSL/TLS from the first byte; choose '{IMPLICIT}' "
            f"(or '{AUTO}') for this port."
        )
    if port == SUBMISSION_PORT and tls == "implicit":
        warnings.append(
            f"Port 587 normally expects STARTTLS; choose '{STARTTLS}' (or '{AUTO}') for this port."
        )
    return warnings
