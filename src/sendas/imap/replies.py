"""What an IMAP failure means for the person fixing it: each function turns a low-level
failure or a server reply into a :mod:`sendas.errors` class naming the step, the server's
reply and a hint in plain words. The session in :mod:`sendas.imap.session` decides when."""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from typing import Literal

from sendas.errors import (
    AuthError,
    MailConnectionError,
    MailTimeoutError,
    OAuthError,
    ReplyError,
    TlsError,
    TransportError,
)
from sendas.imap.endpoint import ImapEndpoint
from sendas.net.tls_modes import AUTO, IMPLICIT, STARTTLS

Step = Literal["connect", "tls", "login", "find_sent", "append"]

_TLS_PORT_HINT = (
    f"The port does not speak TLS from the first byte: the server greets in plain text. "
    f"Choose '{STARTTLS}' (or '{AUTO}') for this port; '{IMPLICIT}' is for ports such as 993."
)
_NO_GREETING_HINT = (
    f"The server accepted the connection but sent no IMAP greeting: it probably expects TLS "
    f"from the first byte. Choose '{IMPLICIT}' (or '{AUTO}') for this port."
)
_TLS_ONLY_HINT = f"The server only accepts passwords over TLS: choose '{STARTTLS}' or '{IMPLICIT}'."
_MODE_FOR_PORT = f"993 '{IMPLICIT}', 143 '{STARTTLS}', or '{AUTO}'"


# An IMAP greeting (RFC 9051 7.1): imaplib raises with it when it is not OK or PREAUTH.
_IMAP_GREETING = re.compile(r"^\*\s+(OK|PREAUTH|BYE)\b", re.IGNORECASE)


def reply_text(value: object) -> str:
    """A server reply (bytes, str or exception args) as text."""
    if isinstance(value, BaseException):
        value = value.args[0] if len(value.args) == 1 else " ".join(map(str, value.args))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return str(value).strip()


def response_code(reply: str) -> str:
    """The response code of a reply: ``[AUTHENTICATIONFAILED] ...`` -> ``AUTHENTICATIONFAILED``."""
    match = re.match(r"\s*\[([A-Za-z-]+)", reply)
    return match.group(1).upper() if match else ""


# --- connect and TLS --------------------------------------------------------------------------


def connect_failure(exc: OSError, endpoint: ImapEndpoint) -> TransportError:
    """The TCP connection could not be opened."""
    where = f"{endpoint.host}:{endpoint.port}"
    if isinstance(exc, socket.gaierror):
        return MailConnectionError(
            f"host {endpoint.host} not found",
            step="connect",
            server_reply=reply_text(exc),
            hint="The host name could not be resolved: check its spelling.",
        )
    if isinstance(exc, TimeoutError):
        return MailTimeoutError(
            f"no answer from {where}",
            step="connect",
            hint=f"No answer from {where}: the port may be blocked by a firewall between this "
            "server and the mail server, or the host name or port is wrong.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return MailConnectionError(
            f"{where} refused the connection",
            step="connect",
            server_reply=reply_text(exc),
            hint=f"Nothing accepts connections on port {endpoint.port} of {endpoint.host}: "
            f"check the port (IMAP uses 993 with {IMPLICIT!r}, 143 with {STARTTLS!r}).",
        )
    return MailConnectionError(
        f"could not connect to {where}: {exc.strerror or exc.__class__.__name__}",
        step="connect",
        server_reply=reply_text(exc),
        hint="The server could not be reached: check the host, the port and the network.",
    )


def greeting_failure(exc: BaseException, step: Step, endpoint: ImapEndpoint) -> TransportError:
    """The connection opened but no IMAP greeting came."""
    if isinstance(exc, TimeoutError):
        hint = (
            _NO_GREETING_HINT
            if endpoint.tls_mode != "implicit"
            else "The TLS connection opened but no IMAP greeting came: check the port."
        )
        return MailTimeoutError("no IMAP greeting from the server", step=step, hint=hint)
    if isinstance(exc, ssl.SSLError):
        return tls_failure(exc, step, endpoint)
    text = reply_text(exc)
    spoke_imap = _IMAP_GREETING.match(text) is not None
    return MailConnectionError(
        "the server did not greet as an IMAP server"
        if spoke_imap
        else "the server does not speak IMAP",
        step=step,
        # Another service's banner (SSH, HTTP...) is never repeated: Test Connection must not
        # read out what listens on a port.
        server_reply=text if spoke_imap else "",
        hint="This port does not answer like an IMAP server: check the host, the port "
        "(993 or 143) and the TLS mode.",
    )


def _untrusted(exc: ssl.SSLCertVerificationError, step: Step, host: str, where: str) -> TlsError:
    reason = exc.verify_message or exc.reason or "verification failed"
    if exc.verify_code == 62 or "hostname" in reason.lower():  # X509_V_ERR_HOSTNAME_MISMATCH
        hint = (
            f"The server's certificate is not valid for the name {host!r}: use the host name "
            "the certificate names (often the provider's documented IMAP host)."
        )
    elif "expired" in reason.lower():
        hint = "The server's certificate has expired: its administrator must renew it."
    else:
        hint = (
            "The server's certificate is not trusted (" + reason + "). If this is a "
            "private server, add its CA certificate (PEM) to the account's settings. "
            "Certificate checks are never switched off."
        )
    return TlsError(
        f"certificate of {where} not trusted: {reason}", step=step, server_reply=reason, hint=hint
    )


def tls_failure(exc: BaseException, step: Step, endpoint: ImapEndpoint) -> TransportError:
    """A TLS handshake that failed, as a TlsError (or a timeout) with a hint."""
    where = f"{endpoint.host}:{endpoint.port}"
    if isinstance(exc, TimeoutError):
        return MailTimeoutError(
            f"TLS handshake with {where} timed out",
            step=step,
            hint="The server did not complete the TLS handshake. Check that the TLS mode "
            "matches the port (" + _MODE_FOR_PORT + ").",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _untrusted(exc, step, endpoint.host, where)
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        if "WRONG_VERSION_NUMBER" in reason.upper() or "wrong version number" in str(exc):
            return TlsError(
                f"TLS handshake with {where} failed: wrong version number",
                step=step,
                server_reply=reason,
                hint=_TLS_PORT_HINT,
            )
        return TlsError(
            f"TLS handshake with {where} failed: {reason}",
            step=step,
            server_reply=reason,
            hint="The TLS handshake failed. Check the TLS mode for this port ("
            + _MODE_FOR_PORT
            + ")"
            " and that the server supports TLS 1.2 or newer.",
        )
    if isinstance(exc, ValueError) and "PEM" in str(exc).upper():
        return TlsError(
            "the account's CA certificate is not valid PEM",
            step=step,
            hint="Paste the CA certificate in PEM form (-----BEGIN CERTIFICATE----- ...).",
        )
    return TlsError(
        f"TLS handshake with {where} failed: {exc.__class__.__name__}",
        step=step,
        server_reply=reply_text(exc),
        hint="The connection broke during the TLS handshake. Check the TLS mode for this port "
        "(" + _MODE_FOR_PORT + ").",
    )


def starttls_missing() -> TlsError:
    return TlsError(
        "the server does not offer STARTTLS",
        step="tls",
        hint="The server offers no STARTTLS on this port, so the password was not sent. "
        "Use '" + IMPLICIT + "' (usually port 993).",
    )


def starttls_refused(exc: imaplib.IMAP4.error) -> TlsError:
    return TlsError(
        "the server refused STARTTLS",
        step="tls",
        server_reply=reply_text(exc),
        hint="The server refused to start TLS. Use '" + IMPLICIT + "' (usually port 993).",
    )


def step_failure(
    exc: OSError | imaplib.IMAP4.error, step: Step, endpoint: ImapEndpoint
) -> TransportError:
    """Any other failure inside a step: a timeout, a dropped link, a refused command."""
    if isinstance(exc, TimeoutError):
        return MailTimeoutError(
            f"the server did not answer in time during {step}",
            step=step,
            hint="The server stopped answering. Try again later; if it persists, check the "
            "TLS mode for the port and the network between the servers.",
        )
    if isinstance(exc, imaplib.IMAP4.abort):
        return MailConnectionError(
            f"the server closed the connection during {step}",
            step=step,
            server_reply=reply_text(exc),
            hint="The server ended the connection. Try again later.",
        )
    if isinstance(exc, ssl.SSLError):
        return tls_failure(exc, step, endpoint)
    if isinstance(exc, OSError):
        return MailConnectionError(
            f"connection lost during {step}: {exc.__class__.__name__}",
            step=step,
            server_reply=reply_text(exc),
            hint="The connection broke. Try again later.",
        )
    return ReplyError(
        f"the server refused a command during {step}",
        kind="permanent",
        step=step,
        server_reply=reply_text(exc),
        hint="The server answered with an error; see its reply.",
    )


# --- login ------------------------------------------------------------------------------------


def plaintext_refused() -> TlsError:
    return TlsError(
        "refusing to send the password without TLS",
        step="login",
        hint="TLS is disabled for this account, so the password would cross the network in "
        f"clear text. Choose '{STARTTLS}' or '{IMPLICIT}'.",
    )


def login_disabled() -> TlsError:
    return TlsError(
        "the server does not accept a password on this connection",
        step="login",
        hint=_TLS_ONLY_HINT,
    )


def ascii_only() -> AuthError:
    return AuthError(
        "the server cannot take a non-ASCII user name or password",
        step="login",
        hint="The server offers only LOGIN, which carries ASCII only: use a password made of "
        "ASCII characters.",
    )


def _login_hint(reply: str, endpoint: ImapEndpoint) -> str:
    lowered = reply.lower()
    host = endpoint.host.lower()
    if "application-specific password" in lowered or "app password" in lowered:
        return (
            "The provider wants an app password: create one in the account's security "
            "settings (two-step verification is required) and use it here, without spaces."
        )
    if host.endswith(("outlook.office365.com", "outlook.com", "office365.com")):
        return (
            "Microsoft refused the sign-in. Outlook.com and most Microsoft 365 tenants no "
            "longer accept passwords over IMAP: use Sign in with Microsoft, or ask an "
            "administrator to allow IMAP for the mailbox."
        )
    if host.endswith(("gmail.com", "googlemail.com")):
        return (
            "Google refused the user name or password. Use the full address as user name and "
            "an app password (Google shows it with spaces, which are not part of it), or Sign "
            "in with Google."
        )
    return (
        "The server refused the user name or password. Check both; the user name is often the "
        "full email address. Providers with two-step verification need an app password."
    )


def xoauth2_not_offered() -> AuthError:
    return AuthError(
        "the server does not offer XOAUTH2",
        step="login",
        hint="This alias signs in with Google or Microsoft, but the IMAP server does not accept "
        "their tokens (no AUTH=XOAUTH2). Give the IMAP account a password instead.",
    )


def token_refused(reply: str, endpoint: ImapEndpoint) -> TransportError:
    """The server said NO to a fresh access token too."""
    code = response_code(reply)
    if code in ("UNAVAILABLE", "SERVERBUG", "INUSE", "LIMIT"):
        return login_refused(reply, endpoint)
    return AuthError(
        "the server refused the access token",
        step="login",
        server_reply=reply,
        hint="The IMAP server refused the sign-in token even after a refresh. Check that the "
        f"IMAP user name ({endpoint.username}) is the signed-in address and that IMAP is "
        "enabled for the mailbox; if the IMAP account was linked after signing in, click "
        "Reconnect so that the sign-in also covers IMAP.",
    )


def token_timeout() -> MailTimeoutError:
    return MailTimeoutError(
        "no access token in time",
        step="login",
        hint="Getting a fresh sign-in token took too long. Try again later.",
    )


def token_unavailable(exc: BaseException) -> TransportError:
    return OAuthError(
        f"could not get an access token ({type(exc).__name__})",
        step="login",
        hint="Sign in again with the provider for this alias.",
    )


def login_refused(reply: str, endpoint: ImapEndpoint) -> TransportError:
    """The server said NO to the login: why, by its response code."""
    code = response_code(reply)
    if code == "PRIVACYREQUIRED":
        return TlsError(
            "the server requires TLS before the password",
            step="login",
            server_reply=reply,
            hint=_TLS_ONLY_HINT,
        )
    if code in ("UNAVAILABLE", "SERVERBUG", "INUSE", "LIMIT"):
        return ReplyError(
            "the server cannot log in now",
            kind="transient",
            step="login",
            server_reply=reply,
            hint="The server is temporarily unable to log in. Try again later.",
        )
    if code == "EXPIRED":
        hint = "The password has expired: change it at the provider, then update it here."
    elif code == "CONTACTADMIN":
        hint = "The server asks to contact its administrator: the account may be blocked."
    else:
        hint = _login_hint(reply, endpoint)
    return AuthError("the server refused the login", step="login", server_reply=reply, hint=hint)


# --- folders and append -------------------------------------------------------------------


def list_refused(reply: str) -> ReplyError:
    return ReplyError(
        "the server refused to list folders",
        kind="permanent",
        step="find_sent",
        server_reply=reply,
        hint="The server would not list the account's folders.",
    )


def sent_folder_missing(name: str, folders: str) -> TransportError:
    """The account names a Sent folder the server does not have."""
    return TransportError(
        f"no folder named {name!r}",
        step="find_sent",
        hint=f"The account names {name!r} as its Sent folder but the server has no such "
        f"folder. Folders found: {folders}.",
    )


def no_sent_folder(folders: str) -> TransportError:
    return TransportError(
        "no Sent folder found",
        step="find_sent",
        hint="No folder is marked as Sent and none has a usual Sent name. Enter the Sent "
        f"folder's name in the account's settings. Folders found: {folders}.",
    )


def append_refused(reply: str, folder: str) -> ReplyError:
    """The server would not store the copy in ``folder``: why, and whether to retry."""
    code = response_code(reply)
    kind, hint = "permanent", "The server refused to store the copy; see its reply."
    if code == "TRYCREATE":
        hint = f"The folder {folder!r} does not exist on the server."
    elif code == "OVERQUOTA":
        kind, hint = "quota", "The mailbox is full: delete old mail or raise its quota."
    elif code == "LIMIT" or "too large" in reply.lower():
        hint = "The message is larger than the server accepts in a folder."
    elif code in ("UNAVAILABLE", "INUSE", "SERVERBUG"):
        kind, hint = "transient", "The server could not store the copy now."
    return ReplyError(
        f"the server refused the copy in {folder!r}",
        kind=kind,
        step="append",
        server_reply=reply,
        hint=hint,
    )
