"""Reaching an SMTP server: resolve, TCP, implicit TLS or STARTTLS, the greeting and EHLO.

:func:`establish` returns a connection ready for AUTH, or raises a :class:`TransportError`
naming the step (``resolve``, ``connect``, ``tls``, ``greeting``, ``ehlo``, ``starttls``)
after closing whatever it had opened.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import idna

from sendas.errors import MailConnectionError, MailTimeoutError, TlsError
from sendas.net.tls import client_context
from sendas.net.tls_modes import IMPLICIT, STARTTLS
from sendas.smtp.endpoint import EffectiveTls, SmtpEndpoint
from sendas.smtp.hints import hint_for
from sendas.smtp.io import Mark, SmtpIO, not_smtp, reply_error
from sendas.smtp.replies import LocalProblem, SmtpCode
from sendas.smtp.wire import Reply, parse_ehlo

# RFC 5321 4.3.2: a greeting is 220 or 554; 421 is allowed at any time (a busy server).
GREETING_CODES = (SmtpCode.SERVICE_READY, SmtpCode.SERVICE_UNAVAILABLE, SmtpCode.TRANSACTION_FAILED)


@dataclass
class Connection:
    """An open connection after EHLO: the stream, what the server offers, whether TLS is on."""

    io: SmtpIO
    extensions: dict[str, str]
    tls_active: bool
    tls_found: EffectiveTls | None = None


async def establish(endpoint: SmtpEndpoint, mark: Mark) -> Connection:
    """Resolve, connect, TLS as the endpoint says, greeting, EHLO (again after STARTTLS)."""
    host = ascii_host(endpoint.host)
    addresses = await _resolve(endpoint, host, mark)
    io = await _connect(endpoint, addresses, mark)
    conn = Connection(io, {}, tls_active=False)
    try:
        mode = endpoint.effective_tls
        greeting = (
            await _greeting_within(io, endpoint.detect_wait) if endpoint.detects_tls else None
        )
        if endpoint.detects_tls and greeting is None:
            mode = "implicit"
            await _start_tls(conn, endpoint, host, "tls", mark, _SILENT)
        elif mode == "implicit":
            await _start_tls(conn, endpoint, host, "tls", mark, IMPLICIT)
        if greeting is None:
            greeting = await io.read("greeting")
        if greeting.code not in GREETING_CODES:
            raise not_smtp()
        if greeting.code != SmtpCode.SERVICE_READY:
            raise reply_error("greeting", greeting)
        mark("greeting", str(greeting))
        await _ehlo(conn, endpoint, mark)
        if mode == "starttls":
            await _starttls(conn, endpoint, host, mark)
            await _ehlo(conn, endpoint, mark)
    except BaseException:
        io.abort()
        raise
    conn.tls_found = mode
    return conn


_SILENT = f"{IMPLICIT} (the server was silent after connect)"


async def _greeting_within(io: SmtpIO, wait: float) -> Reply | None:
    """The greeting if the server sends one within ``wait`` seconds; None if it stays
    silent (it then waits for a TLS handshake). Other failures raise as for any read."""
    saved = io.timeout
    io.timeout = min(wait, saved)
    try:
        return await io.read("greeting")
    except MailTimeoutError:
        io.broken = False  # silence is an answer here, not a broken link
        return None
    finally:
        io.timeout = saved


SockAddr = tuple[int, tuple[Any, ...]]
"""``(address family, socket address)`` exactly as ``getaddrinfo`` returned it."""


async def _resolve(endpoint: SmtpEndpoint, host: str, mark: Mark) -> list[SockAddr]:
    """Resolve once; the addresses the outbound policy refuses are dropped here, and the
    ones kept are connected to as they are (no second lookup: no DNS rebinding)."""
    loop = asyncio.get_running_loop()
    port = endpoint.port
    try:
        async with asyncio.timeout(endpoint.timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise MailTimeoutError(
            f"resolving {endpoint.host} took too long",
            step="resolve",
            hint=hint_for("resolve", None, exc=exc),
        ) from None
    except OSError as exc:
        raise MailConnectionError(
            f"cannot resolve {endpoint.host}: {exc.strerror or exc}",
            step="resolve",
            hint=hint_for("resolve", None, exc=exc),
        ) from None
    found = list(dict.fromkeys((int(info[0]), tuple(info[4])) for info in infos))
    if endpoint.outbound is not None:
        allowed = endpoint.outbound.check(
            endpoint.host, [str(a[0]) for _, a in found], step="connect"
        )
        found = [f for f in found if str(f[1][0]) in allowed]
    mark("resolve", ", ".join(str(a[0]) for _, a in found))
    return found


async def _connect(endpoint: SmtpEndpoint, addresses: list[SockAddr], mark: Mark) -> SmtpIO:
    last: OSError | None = None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(endpoint.timeout):
            for family, sockaddr in addresses:
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, sockaddr)
                except BaseException as exc:
                    sock.close()
                    if not isinstance(exc, OSError):
                        raise
                    last = exc
                    continue
                reader, writer = await asyncio.open_connection(sock=sock)
                mark("connect", f"connected to {sockaddr[0]} port {endpoint.port}")
                return SmtpIO(reader, writer, endpoint.timeout)
    except TimeoutError as exc:
        raise MailTimeoutError(
            f"no TCP connection to {endpoint.host}:{endpoint.port} within {endpoint.timeout:g} s",
            step="connect",
            hint=hint_for("connect", None, exc=exc),
        ) from None
    assert last is not None
    raise MailConnectionError(
        f"cannot connect to {endpoint.host}:{endpoint.port}: {last.strerror or last}",
        step="connect",
        hint=hint_for("connect", None, exc=last),
    ) from None


async def _start_tls(
    conn: Connection, endpoint: SmtpEndpoint, host: str, step: str, mark: Mark, how: str
) -> None:
    try:
        context = client_context(endpoint.ca_bundle_pem)
    except ValueError as exc:
        raise TlsError(str(exc), step=step, hint=hint_for(step, None, exc=exc)) from None
    writer = conn.io.writer
    try:
        async with asyncio.timeout(endpoint.timeout):
            await writer.start_tls(
                context, server_hostname=host, ssl_handshake_timeout=endpoint.timeout
            )
    except ssl.SSLCertVerificationError as exc:
        raise TlsError(
            f"certificate not trusted: {exc.verify_message or exc.reason}",
            step=step,
            hint=hint_for(step, None, exc=exc),
        ) from None
    except ssl.SSLError as exc:
        raise TlsError(
            f"TLS handshake failed: {exc}", step=step, hint=hint_for(step, None, exc=exc)
        ) from None
    except TimeoutError as exc:
        raise MailTimeoutError(
            f"TLS handshake did not finish within {endpoint.timeout:g} s",
            step=step,
            hint=hint_for(step, None, exc=exc),
        ) from None
    except (OSError, EOFError) as exc:
        raise TlsError(
            f"the server closed the connection during the TLS handshake: {exc}",
            step=step,
            hint=hint_for(step, None, exc=ConnectionResetError()),
        ) from None
    conn.tls_active = True
    ssl_object = writer.get_extra_info("ssl_object")
    version = ssl_object.version() if ssl_object is not None else "TLS"
    mark(step, f"{how}: {version}, certificate for {endpoint.host} verified")


async def _ehlo(conn: Connection, endpoint: SmtpEndpoint, mark: Mark) -> None:
    name = endpoint.local_hostname or _address_literal(conn.io)
    reply = await conn.io.command(f"EHLO {name}\r\n".encode("ascii", "replace"), "ehlo")
    if reply.code in (SmtpCode.SYNTAX_ERROR, SmtpCode.NOT_IMPLEMENTED):
        reply = await conn.io.command(f"HELO {name}\r\n".encode("ascii", "replace"), "ehlo")
        conn.extensions = {}
    elif reply.ok:
        conn.extensions = parse_ehlo(reply.text)
    if not reply.ok:
        raise reply_error("ehlo", reply)
    offered = " ".join(f"{k} {v}".strip() if k == "AUTH" else k for k, v in conn.extensions.items())
    mark("ehlo", f"offers: {offered}" if offered else "no extensions (HELO)")


async def _starttls(conn: Connection, endpoint: SmtpEndpoint, host: str, mark: Mark) -> None:
    if "STARTTLS" not in conn.extensions:
        raise TlsError(
            "the server does not offer STARTTLS; credentials were not sent",
            step="starttls",
            hint=hint_for("starttls", None, exc=LocalProblem.STARTTLS_NOT_OFFERED),
        )
    reply = await conn.io.command(b"STARTTLS\r\n", "starttls")
    if reply.code != SmtpCode.SERVICE_READY:
        raise TlsError(
            "the server refused STARTTLS",
            step="starttls",
            code=reply.code,
            server_reply=str(reply),
            hint=hint_for("starttls", reply.code, reply.text),
        )
    await _start_tls(conn, endpoint, host, "starttls", mark, STARTTLS)


def _address_literal(io: SmtpIO) -> str:
    sockname = io.writer.get_extra_info("sockname")
    if not sockname:
        return "localhost"
    address = str(sockname[0])
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def ascii_host(host: str) -> str:
    """The host as DNS and TLS see it (IDNA); unchanged when it cannot be encoded."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        return host
