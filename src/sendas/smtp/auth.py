"""AUTH: the payloads (RFC 4616 PLAIN, LOGIN, Google/Microsoft XOAUTH2), the choice of
mechanism, and the exchange itself, including XOAUTH2's "token rejected: refresh once and
retry" through the endpoint's token provider. The payloads are secrets: they are written to
the socket and nowhere else (no exception, log line or repr)."""

from __future__ import annotations

from base64 import b64encode
from typing import Literal

from sendas.errors import AuthError, OAuthError, SendasError, TlsError
from sendas.smtp.endpoint import SmtpEndpoint
from sendas.smtp.hints import hint_for
from sendas.smtp.io import CRLF, Mark, SmtpIO, reply_error
from sendas.smtp.replies import LocalProblem, ReplyKind, SmtpCode
from sendas.smtp.wire import Reply, auth_mechanisms

Mechanism = Literal["PLAIN", "LOGIN", "XOAUTH2"]

# Preference among what the server offers: PLAIN needs one round trip, LOGIN three.
PASSWORD_MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "LOGIN")


def b64(text: str) -> bytes:
    return b64encode(text.encode("utf-8"))


def plain_payload(username: str, password: str) -> bytes:
    """``base64("\\0user\\0password")``."""
    return b64(f"\0{username}\0{password}")


def xoauth2_payload(username: str, token: str) -> bytes:
    """``base64("user=U\\x01auth=Bearer T\\x01\\x01")``."""
    return b64(f"user={username}\x01auth=Bearer {token}\x01\x01")


def choose_mechanism(offered: set[str], xoauth2: bool) -> Mechanism | None:
    """The mechanism to use, or ``None`` when the server offers none that fits."""
    if xoauth2:
        return "XOAUTH2" if "XOAUTH2" in offered else None
    for mechanism in PASSWORD_MECHANISMS:
        if mechanism in offered:
            return mechanism
    return None


async def authenticate(
    io: SmtpIO, endpoint: SmtpEndpoint, offered: dict[str, str], tls_active: bool, mark: Mark
) -> None:
    """Sign in with the best mechanism the server offers (``offered``: EHLO extensions).

    Raises :class:`TlsError` before sending credentials without TLS (unless the endpoint
    allows it), :class:`AuthError` when no mechanism fits or the server refuses, and
    :class:`OAuthError` when no access token can be had.
    """
    if not tls_active and not endpoint.allow_plaintext_auth:
        raise TlsError(
            "refused to send credentials without TLS",
            step="auth",
            hint=hint_for("auth", None, exc=LocalProblem.PLAINTEXT_AUTH_REFUSED),
        )
    mechanism = choose_mechanism(auth_mechanisms(offered), endpoint.uses_xoauth2)
    if mechanism is None:
        raise AuthError(
            "the server offers no usable sign-in method"
            + (" (XOAUTH2 needed)" if endpoint.uses_xoauth2 else ""),
            step="auth",
            hint=hint_for("auth", None, exc=LocalProblem.AUTH_NOT_OFFERED),
        )
    exchange = {"XOAUTH2": _xoauth2, "PLAIN": _plain, "LOGIN": _login}[mechanism]
    reply = await exchange(io, endpoint)
    if reply.code == SmtpCode.AUTH_CONTINUE:
        reply = await io.command(b"*\r\n", "auth")  # cancel an exchange we cannot finish
    if reply.code != SmtpCode.AUTH_SUCCESSFUL:
        raise reply_error("auth", reply)
    mark("auth", f"signed in as {endpoint.username} with {mechanism}")


def _password(endpoint: SmtpEndpoint) -> str:
    password = endpoint.password
    return password.get_secret_value() if password is not None else ""


async def _plain(io: SmtpIO, endpoint: SmtpEndpoint) -> Reply:
    payload = plain_payload(endpoint.username, _password(endpoint))
    reply = await io.command(b"AUTH PLAIN " + payload + CRLF, "auth")
    if reply.code == SmtpCode.AUTH_CONTINUE:
        reply = await io.command(payload + CRLF, "auth")
    return reply


async def _login(io: SmtpIO, endpoint: SmtpEndpoint) -> Reply:
    reply = await io.command(b"AUTH LOGIN\r\n", "auth")
    if reply.code == SmtpCode.AUTH_CONTINUE:
        reply = await io.command(b64(endpoint.username) + CRLF, "auth")
    if reply.code == SmtpCode.AUTH_CONTINUE:
        reply = await io.command(b64(_password(endpoint)) + CRLF, "auth")
    return reply


async def _xoauth2(io: SmtpIO, endpoint: SmtpEndpoint) -> Reply:
    reply = await _xoauth2_attempt(io, endpoint, await _token(endpoint, force_refresh=False))
    if reply.code != SmtpCode.AUTH_SUCCESSFUL and reply.kind is ReplyKind.AUTH:
        # A rejected token is refreshed once and retried (it may have just expired).
        reply = await _xoauth2_attempt(io, endpoint, await _token(endpoint, force_refresh=True))
    return reply


async def _xoauth2_attempt(io: SmtpIO, endpoint: SmtpEndpoint, token: str) -> Reply:
    payload = xoauth2_payload(endpoint.username, token)
    reply = await io.command(b"AUTH XOAUTH2 " + payload + CRLF, "auth")
    if reply.code == SmtpCode.AUTH_CONTINUE:
        # Google/Microsoft answer a bad token with a base64 JSON challenge; an empty
        # line ends the exchange and brings the final 535.
        reply = await io.command(CRLF, "auth")
    return reply


async def _token(endpoint: SmtpEndpoint, *, force_refresh: bool) -> str:
    provider = endpoint.token_provider
    assert provider is not None
    try:
        return await provider(force_refresh)
    except SendasError:
        raise
    except Exception as exc:
        raise OAuthError(
            f"could not get an access token ({type(exc).__name__})",
            step="auth",
            hint="Sign in again with the provider for this alias.",
        ) from exc
