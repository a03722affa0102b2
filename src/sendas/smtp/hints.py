"""Hints: a short, person-readable suggestion for each SMTP failure, from the server's
reply (with the known wordings of Google, Microsoft and Amazon SES), from a network or TLS
error, or from a problem the client found itself (:class:`LocalProblem`)."""

from __future__ import annotations

import socket
import ssl

from sendas.net.tls_modes import AUTO, IMPLICIT, NONE, STARTTLS
from sendas.smtp.replies import LocalProblem, ReplyKind, classify, enhanced_status, mentions

_MS_ADMIN = (
    "Microsoft 365 has SMTP sign-in (Authenticated SMTP) switched off for this mailbox or the "
    "whole organisation. An administrator must switch it on: Microsoft 365 admin center -> "
    "Users -> this user -> Mail -> Manage email apps -> Authenticated SMTP. If Security "
    "Defaults are on, they block it regardless; then use Sign in with Microsoft instead."
)
_MS_BASIC_OFF = (
    "This Microsoft account no longer accepts passwords for sending mail. Switch the alias to "
    "Sign in with Microsoft."
)
_MS_BASIC_UNSUPPORTED = (
    "Microsoft no longer accepts a password for sending from this organisation (Basic "
    "authentication for SMTP is off: the default for new tenants, and for existing ones from "
    "the end of December 2026). Switch the alias to Sign in with Microsoft; only while "
    "Microsoft still allows it can the tenant administrator switch Basic SMTP AUTH back on."
)
_MS_535_573 = (
    "Microsoft refused the sign-in. Usually the password is wrong, SMTP sign-in "
    "(Authenticated SMTP) is off for the mailbox, or - with Sign in with Microsoft - the "
    "token lacks the SMTP.Send permission. Check the password first, then ask an "
    "administrator about Authenticated SMTP, or switch the alias to Sign in with Microsoft."
)
_GOOGLE_APP_PASSWORD = (
    "Google wants an app password here, not the normal account password. Turn on 2-Step "
    "Verification for the Google account, create an app password and paste it (without the "
    "spaces Google shows), or switch the alias to Sign in with Google."
)
_GOOGLE_BAD_LOGIN = (
    "Google did not accept the user name or app password. Use the full email address as user "
    "name and paste the 16-letter app password without spaces; a new app password is needed "
    "after the account password changes."
)
_SEND_AS_DENIED = (
    "The mail account accepted the sign-in but may not send with this From address. Use the "
    "account's own address as From, or have an administrator grant 'Send As' rights for it."
)
_DAILY_QUOTA = (
    "The account has used up its daily sending quota. Sending for this alias pauses and "
    "resumes by itself once the provider's rolling window frees up; nothing is lost."
)
_MS_QUOTA = (
    "Microsoft reports that the sending quota or the number of parallel connections of this "
    "mailbox is exceeded. Sending pauses and resumes by itself; use one connection per "
    "mailbox and consider a longer delay between messages."
)
_MS_CONCURRENCY = (
    "Microsoft allows only a few connections per mailbox at once. Sending pauses briefly; keep "
    "one connection per mailbox."
)
_SES_THROTTLE = (
    "Amazon SES says the maximum sending rate was exceeded. Raise the alias's delay between "
    "messages (e.g. 1000 ms for a sandbox account)."
)
_RATE_LIMITED = (
    "The server is limiting how fast this account sends or signs in. Sending pauses for a few "
    "minutes; raise the alias's delay between messages if it happens again."
)
_AUTH_GENERIC = (
    "The server refused the user name or password. Check both (many providers want the full "
    "email address as user name, and an app password instead of the account password)."
)
_AUTH_REQUIRED = (
    "The server wants a sign-in before it accepts mail. Enter the user name and password of "
    "the mail account."
)
_WRONG_TLS_MODE = (
    f"This port does not speak TLS from the first byte: the server greets in plain text. "
    f"Choose '{STARTTLS}' (or '{AUTO}') for this port, as for 587; '{IMPLICIT}' is for "
    f"ports such as 465."
)
_CONNECT_TIMEOUT = (
    "No answer from the server. The port may be blocked between this machine and the mail "
    "server (many cloud hosts block ports 25, 465 and 587), or the host name or port is wrong."
)
_GREETING_TIMEOUT = (
    f"The connection opened but the server never greeted: it probably expects TLS from the "
    f"first byte. Choose '{IMPLICIT}' (or '{AUTO}') for this port (usually 465); otherwise "
    f"check that this is an SMTP port."
)
_REFUSED = (
    f"Nothing accepts connections on this host and port. Check the port: 465 for '{IMPLICIT}', "
    f"587 for '{STARTTLS}'."
)
_NOT_FOUND = "The host name could not be found. Check its spelling (e.g. smtp.example.com)."
_CERT_SELF_SIGNED = (
    "The server's certificate is self-signed, so it cannot be trusted automatically. If this "
    "is your own server, add its CA certificate (PEM) to this alias. Verification is never "
    "switched off."
)
_CERT_MISMATCH = (
    "The server's certificate was issued for a different name. Use the host name written on "
    "the certificate (usually smtp.<provider>), not an IP address or an alias name."
)
_CERT_EXPIRED = "The server's certificate has expired; its administrator must renew it."
_CERT_UNTRUSTED = (
    "The server's certificate is signed by an authority this machine does not trust. Add "
    "that CA certificate (PEM) to this alias; verification is never switched off."
)
_TLS_FAILED = (
    f"The TLS handshake failed. Check the encryption for the port (465: '{IMPLICIT}', "
    f"587: '{STARTTLS}'), or choose '{AUTO}'."
)
_STARTTLS_MISSING = (
    f"The server does not offer STARTTLS on this port, so the password was not sent. Use port "
    f"465 with '{IMPLICIT}', or ask the provider for the right port. Only for a trusted local "
    f"relay: choose '{NONE}'."
)
_PLAINTEXT_REFUSED = (
    "TLS is disabled for this alias, so the password would travel unencrypted; sendas refused "
    f"to send it. Choose '{STARTTLS}' or '{IMPLICIT}', or explicitly allow plain-text sign-in "
    "for a trusted local relay."
)
_AUTH_MISSING = (
    "The server offers no sign-in method that sendas can use on this connection. If the port "
    "supports STARTTLS, choose it: many servers only offer sign-in after TLS."
)
_SMTPUTF8_MISSING = (
    "An address has non-ASCII characters before the @, and this server does not accept them "
    "(no SMTPUTF8). Use an ASCII address for this recipient or sender; nothing was sent."
)
_INVALID_ADDRESS = "The address is not a valid email address; nothing was sent."
_RECIPIENT_REFUSED = (
    "The server refused this recipient address. Check it for typos; the mailbox may not exist."
)
_TOO_BIG = "The message is larger than the server accepts. Make attachments smaller."
_TRANSIENT = "The server had a temporary problem. The message will be tried again later."
_CLOSED = (
    "The server closed the connection. If this repeats right after connecting, check the TLS "
    "mode for the port."
)


def _tls_hint(error_text: str) -> str | None:
    lowered = error_text.lower().replace("_", " ")
    if "wrong version number" in lowered or "packet length too long" in lowered:
        return _WRONG_TLS_MODE
    if "record layer failure" in lowered or "http request" in lowered:
        return _WRONG_TLS_MODE
    if "self-signed" in lowered or "self signed" in lowered:
        return _CERT_SELF_SIGNED
    if "mismatch" in lowered or "doesn't match" in lowered or "not valid for" in lowered:
        return _CERT_MISMATCH
    if "expired" in lowered:
        return _CERT_EXPIRED
    if "certificate verify failed" in lowered or "unknown ca" in lowered:
        return _CERT_UNTRUSTED
    return None


def _exception_hint(step: str, exc: BaseException) -> str | None:
    if isinstance(exc, ssl.SSLError):
        return _tls_hint(str(exc)) or _TLS_FAILED
    if isinstance(exc, socket.gaierror) or step == "resolve":
        return _NOT_FOUND
    if isinstance(exc, TimeoutError):
        if step == "greeting":
            return _GREETING_TIMEOUT
        if step == "connect":
            return _CONNECT_TIMEOUT
        if step == "tls":
            return _GREETING_TIMEOUT
        return None
    if isinstance(exc, ConnectionRefusedError):
        return _REFUSED
    text_hint = _tls_hint(str(exc))
    if text_hint:
        return text_hint
    if isinstance(exc, ConnectionError | EOFError) and step in ("greeting", "tls"):
        return _CLOSED
    return None


_LOCAL_HINTS = {
    LocalProblem.STARTTLS_NOT_OFFERED: _STARTTLS_MISSING,
    LocalProblem.PLAINTEXT_AUTH_REFUSED: _PLAINTEXT_REFUSED,
    LocalProblem.AUTH_NOT_OFFERED: _AUTH_MISSING,
    LocalProblem.SMTPUTF8_NOT_OFFERED: _SMTPUTF8_MISSING,
    LocalProblem.INVALID_ADDRESS: _INVALID_ADDRESS,
}


def _reply_hint(step: str, code: int, text: str) -> str:
    esc = enhanced_status(text)
    detail = (esc[1], esc[2]) if esc else None
    return (
        _sign_in_hint(code, detail, text)
        or _limit_hint(code, detail, text)
        or _generic_hint(step, code, detail, text)
    )


def _sign_in_hint(code: int, detail: tuple[int, int] | None, text: str) -> str | None:
    """A provider's known sign-in refusal, named by its wording or enhanced code."""
    if mentions(text, "smtpclientauthentication is disabled"):
        return _MS_ADMIN
    if mentions(text, "basic authentication is disabled"):
        return _MS_BASIC_OFF
    if detail == (7, 30) or mentions(text, "basic authentication is not supported"):
        return _MS_BASIC_UNSUPPORTED
    if code == 534 and (detail == (7, 9) or mentions(text, "application-specific password")):
        return _GOOGLE_APP_PASSWORD
    if mentions(text, "application-specific password required"):
        return _GOOGLE_APP_PASSWORD
    if mentions(text, "username and password not accepted"):  # Google's wording; 5.7.8 is generic
        return _GOOGLE_BAD_LOGIN
    if code == 535 and detail == (7, 3):
        return _MS_535_573
    return None


def _limit_hint(code: int, detail: tuple[int, int] | None, text: str) -> str | None:
    """A provider's known refusal to send: send-as, quotas, throttling, TLS first."""
    if mentions(text, "sendasdenied", "not allowed to send as") or detail in ((7, 60), (2, 252)):
        return _SEND_AS_DENIED
    if detail == (4, 5) or mentions(text, "daily user sending quota"):
        return _DAILY_QUOTA
    if mentions(text, "submissionquotaexceeded"):
        return _MS_QUOTA
    if (code == 432 and detail == (3, 2)) or mentions(text, "thread limit"):
        return _MS_CONCURRENCY
    if mentions(text, "throttling", "maximum sending rate"):
        return _SES_THROTTLE
    if mentions(text, "starttls") and code in (530, 538):
        return (
            f"The server requires TLS before anything else. Choose '{STARTTLS}' (port 587) or "
            f"'{IMPLICIT}' (port 465)."
        )
    return None


def _generic_hint(step: str, code: int, detail: tuple[int, int] | None, text: str) -> str:
    """A hint from the reply's class when no provider's case matched."""
    kind = classify(code, text)
    if kind is ReplyKind.RATE_LIMIT:
        return _RATE_LIMITED
    if kind is ReplyKind.QUOTA:
        return _DAILY_QUOTA
    if kind is ReplyKind.AUTH:
        return _AUTH_REQUIRED if code == 530 else _AUTH_GENERIC
    if code == 552 or detail == (3, 4):
        return _TOO_BIG
    if step == "rcpt_to" and kind is ReplyKind.PERMANENT:
        return _RECIPIENT_REFUSED
    if kind is ReplyKind.TRANSIENT:
        return _TRANSIENT
    return f"The server refused the {step.replace('_', ' ')} step; its reply is shown above."


def hint_for(
    step: str,
    code: int | None,
    text: str = "",
    exc: BaseException | LocalProblem | None = None,
) -> str:
    """A short, person-readable suggestion for a failure at ``step``.

    ``code``/``text`` is the server's reply when there was one; ``exc`` the network or TLS
    error, or a :class:`LocalProblem` the client detected itself.
    """
    if isinstance(exc, LocalProblem):
        return _LOCAL_HINTS[exc]
    if code is not None:
        return _reply_hint(step, code, text)
    if exc is not None:
        hint = _exception_hint(step, exc)
        if hint:
            return hint
    if step in ("connect", "greeting"):
        return _CONNECT_TIMEOUT
    if step == "tls":
        return _TLS_FAILED
    return "The connection to the server failed; it will be tried again."
