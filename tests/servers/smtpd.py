"""A real aiosmtpd server in-process on port 0, scriptable and recording.

Fixtures:
- ``tls_ca`` / ``unknown_ca``: trustme CAs made at test time (the second one signs nothing
  the server uses: the failure cases).
- ``smtpd``: async factory ``await smtpd(tls="starttls"|"implicit"|"none", ...)`` returning a
  :class:`SmtpdServer` with ``.port``, ``.recorder`` and ``.endpoint(**overrides)``.
- ``silent_server``: a TCP server that accepts and never greets; yields its port.

The :class:`Recorder` keeps every command line received (AUTH continuation lines too, not
the message data), each transaction (envelope, raw data) and the XOAUTH2 payloads (the
decoded SASL strings). XOAUTH2 accepts ``recorder.tokens`` (user -> token), or, with
``smtpd(token_check=...)``, whatever access token that callable (``(token, user) -> bool``,
e.g. an authorization server's ``token_check``) says is active; otherwise a 334 challenge
with Gmail's base64 JSON error, then ``535 5.7.8``.
``recorder.script`` maps a command (``"MAIL"``, ``"RCPT"``, ``"AUTH"``, ``"DATA"``,
``"EHLO"``, ``"STARTTLS"``...) or ``"DATA_END"`` (the reply after the data) to a reply
string, a list of lines, :data:`DROP` (close the connection without a reply) or a callable
returning one of those or ``None`` (``None``: behave normally); a ``"DATA_END"`` callable
may also return an awaitable of one (a server slow to answer).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from sendas.smtp import SmtpEndpoint, TlsMode

DROP = "<drop the connection>"
"""Script value: close the connection instead of replying."""
HANG = "<never reply>"
"""Script value: stop answering on this connection (the client must time out)."""

ScriptValue = str | list[str] | None
Script = dict[str, ScriptValue | Callable[..., ScriptValue]]

USER = "alice@example.test"
PASSWORD = "correct horse battery staple"
TOKEN = "ya29.valid-token"


@dataclass
class Received:
    """One transaction as the server saw it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    next_command_waiting: bool = False  # the next MAIL came with the end of data
    dropped: bool = False


@dataclass
class Recorder:
    """What the server received, and the replies scripted by the test."""

    commands: list[bytes] = field(default_factory=list)
    # per command line: had the client already sent more (pipelined) when it was read?
    more_waiting: list[bool] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    xoauth2_payloads: list[bytes] = field(default_factory=list)
    auth_exchange: list[bytes] = field(default_factory=list)  # AUTH lines + client answers
    script: Script = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=lambda: {USER: PASSWORD})
    tokens: dict[str, str] = field(default_factory=lambda: {USER: TOKEN})
    # XOAUTH2 with a real authorization server: ``token_check(access_token, user)`` says
    # whether the token is active for that user (replaces ``tokens`` when set).
    token_check: Callable[[str, str], bool] | None = None
    advertise_auth: list[str] | None = None  # replace the EHLO AUTH line (None: as is)
    connections: int = 0
    open_now: int = 0  # connections open at this moment
    most_open: int = 0  # the most connections that were open at once
    protocols: list[SMTP] = field(default_factory=list)

    def lines_starting(self, prefix: bytes) -> list[bytes]:
        return [c for c in self.commands if c.upper().startswith(prefix.upper())]

    def waiting_after(self, prefix: bytes) -> list[bool]:
        """For each command line starting with ``prefix``: did more input follow at once?"""
        return [
            more
            for line, more in zip(self.commands, self.more_waiting, strict=True)
            if line.upper().startswith(prefix.upper())
        ]

    def reply_for(self, key: str, *args: Any) -> ScriptValue:
        rule = self.script.get(key)
        if callable(rule):
            result: ScriptValue = rule(*args)
            return result
        return rule


def _push_text(value: str | list[str]) -> str:
    return "\r\n".join(value) if isinstance(value, list) else value


class ScriptedSMTP(SMTP):  # type: ignore[misc]
    """aiosmtpd's server with recorded input lines and scriptable replies per command."""

    def __init__(self, handler: RecordingHandler, recorder: Recorder, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.recorder = recorder
        self._in_data = False
        for command, method in list(self._smtp_methods.items()):
            self._smtp_methods[command] = self._scripted(command, method)

    def _scripted(
        self, command: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        async def run(arg: str | None) -> None:
            if command == "AUTH":
                self.recorder.auth_exchange.append(self.recorder.commands[-1])
            reply = self.recorder.reply_for(command, arg)
            if reply is None:
                await method(arg)
            elif reply == DROP:
                self.transport.close()
            elif reply == HANG:
                await asyncio.sleep(3600)
            else:
                await self.push(_push_text(reply))

        return run

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super()._cb_client_connected(reader, writer)
        self.recorder.connections += 1
        self.recorder.open_now += 1
        self.recorder.most_open = max(self.recorder.most_open, self.recorder.open_now)
        self.recorder.protocols.append(self)
        readuntil, readline = reader.readuntil, reader.readline

        async def recording_readuntil(separator: bytes = b"\n") -> bytes:
            line = await readuntil(separator)
            if not self._in_data:
                self.recorder.commands.append(line.rstrip(b"\r\n"))
                self.recorder.more_waiting.append(bool(reader._buffer))  # type: ignore[attr-defined]
            return line

        async def recording_readline() -> bytes:
            line = await readline()  # only AUTH exchanges read with readline()
            self.recorder.commands.append(line.rstrip(b"\r\n"))
            self.recorder.auth_exchange.append(line.rstrip(b"\r\n"))
            return line

        reader.readuntil = recording_readuntil  # type: ignore[method-assign]
        reader.readline = recording_readline  # type: ignore[method-assign]

    def connection_lost(self, error: Exception | None) -> None:
        self.recorder.open_now -= 1
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False


class RecordingHandler:
    """aiosmtpd handler: records transactions, adds EHLO keywords, does XOAUTH2."""

    def __init__(self, recorder: Recorder, *, pipelining: bool) -> None:
        self.recorder = recorder
        self.pipelining = pipelining

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.recorder.advertise_auth is not None:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
            responses.insert(-1, "250-AUTH " + " ".join(self.recorder.advertise_auth))
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=raw,
            mail_options=list(envelope.mail_options),
            next_command_waiting=bool(server._reader._buffer),
        )
        self.recorder.messages.append(received)
        reply = self.recorder.reply_for("DATA_END", received)
        if inspect.isawaitable(reply):
            reply = await reply
        if reply == DROP:
            received.dropped = True
            server.transport.close()
            return "250 never sent"
        if reply == HANG:
            await asyncio.sleep(3600)
        return _push_text(reply) if reply is not None else "250 2.0.0 OK queued"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        payload = base64.b64decode(args[1]) if len(args) > 1 else b""
        self.recorder.xoauth2_payloads.append(payload)
        fields = dict(part.split("=", 1) for part in payload.decode().split("\x01") if "=" in part)
        user, bearer = fields.get("user", ""), fields.get("auth", "")
        check = self.recorder.token_check
        if check is not None:
            scheme, _, token = bearer.partition(" ")
            accepted = scheme == "Bearer" and bool(token) and check(token, user)
        else:
            accepted = bearer == f"Bearer {self.recorder.tokens.get(user)}"
        if accepted:
            return AuthResult(success=True, auth_data=user)
        # As Gmail: a 334 with a base64 JSON error first, then 535 after the empty line.
        error = json.dumps(
            {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
        )
        await server.push("334 " + base64.b64encode(error.encode()).decode())
        await server._reader.readline()
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )


def _authenticator(recorder: Recorder) -> Callable[..., AuthResult]:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if recorder.users.get(user) == password:
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    return check


@dataclass
class SmtpdServer:
    host: str
    port: int
    tls: TlsMode
    recorder: Recorder
    ca_pem: str
    server: asyncio.Server

    def endpoint(self, **overrides: Any) -> SmtpEndpoint:
        """An endpoint for this server: the right TLS mode, the test CA, a 2 s timeout."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "username": USER,
            "password": SecretStr(PASSWORD),
            "ca_bundle_pem": None if self.tls == "none" else self.ca_pem,
            "timeout": 2.0,
            "allow_plaintext_auth": self.tls == "none",
        }
        values.update(overrides)
        return SmtpEndpoint(**values)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def unknown_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


SmtpdFactory = Callable[..., Awaitable[SmtpdServer]]


@pytest_asyncio.fixture
async def smtpd(
    tls_ca: trustme.CA, server_ssl_context: ssl.SSLContext
) -> AsyncIterator[SmtpdFactory]:
    started: list[SmtpdServer] = []

    async def start(
        tls: TlsMode = "starttls",
        *,
        pipelining: bool = False,
        smtputf8: bool = False,
        offer_starttls: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        script: Script | None = None,
        token_check: Callable[[str, str], bool] | None = None,
    ) -> SmtpdServer:
        recorder = Recorder(script=dict(script or {}), token_check=token_check)
        handler = RecordingHandler(recorder, pipelining=pipelining)
        context = ssl_context or server_ssl_context
        kwargs: dict[str, Any] = {
            "enable_SMTPUTF8": smtputf8,
            "authenticator": _authenticator(recorder),
            "auth_require_tls": tls == "starttls" and offer_starttls,
            "tls_context": context if tls == "starttls" and offer_starttls else None,
            "hostname": "mx.example.test",
            "timeout": 10,
        }
        server = await asyncio.get_running_loop().create_server(
            lambda: ScriptedSMTP(handler, recorder, **kwargs),
            "127.0.0.1",
            0,
            ssl=context if tls == "implicit" else None,
        )
        port = server.sockets[0].getsockname()[1]
        pem = tls_ca.cert_pem.bytes().decode()
        instance = SmtpdServer("127.0.0.1", port, tls, recorder, pem, server)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.server.close()
        for protocol in instance.recorder.protocols:
            if protocol.transport is not None:
                protocol.transport.abort()
        await instance.server.wait_closed()


@pytest_asyncio.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never says a word."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in writers:
        writer.transport.abort()
    await server.wait_closed()
