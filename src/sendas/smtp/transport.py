"""An SMTP client session for one :class:`SmtpEndpoint`: connect, TLS, EHLO, AUTH, then any
number of submissions over the same connection, pipelined (RFC 2920) when offered.

Hand-written on asyncio streams rather than aiosmtplib: aiosmtplib has no PIPELINING and
waits one round trip per command, which the outbox's throughput target rules out.

Errors are the classes of :mod:`sendas.errors`, each with ``step``, ``code``,
``server_reply`` and ``hint``. No secret (password, token, AUTH payload) ever reaches an
exception, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import idna

from sendas.errors import (
    AuthError,
    DeliveryUnknown,
    MailConnectionError,
    MailTimeoutError,
    OAuthError,
    ReplyError,
    SendasError,
    SmtpUtf8Required,
    TlsError,
    TransportError,
)
from sendas.smtp import auth as smtp_auth
from sendas.smtp.endpoint import SmtpEndpoint
from sendas.smtp.replies import LocalProblem, ReplyKind, SmtpCode, hint_for
from sendas.smtp.tls import client_context
from sendas.smtp.wire import (
    AddressProblem,
    MalformedReply,
    Reply,
    auth_mechanisms,
    frame_data,
    is_last_line,
    needs_smtputf8,
    parse_ehlo,
    parse_reply,
    wire_address,
)

log = logging.getLogger("sendas.smtp")

StepObserver = Callable[[str, float, str], None]
"""Called after each step that succeeded: ``(step, milliseconds, detail)``."""

_CRLF = b"\r\n"
_WRITE_HIGH_WATER = 256 * 1024
_QUIT_TIMEOUT = 2.0
_SPIN = 0.0015
"""The last moments before a timed start are waited for by yielding to the event loop
rather than by a timer, whose wake-up is up to a millisecond late."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to submit: the envelope sender, the recipients, the exact bytes."""

    envelope_from: str
    recipients: Sequence[str]
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class SubmitResult:
    """What the server said about one message.

    ``delivered`` is True iff the server answered 2xx after the end of data. ``rejected``
    maps each refused recipient to ``(code, text, kind)``. ``final_reply`` is the reply
    after the data (or to ``DATA`` itself), ``None`` when no data was sent because every
    recipient was refused.
    """

    accepted: list[str]
    rejected: dict[str, tuple[int, str, ReplyKind]]
    final_reply: tuple[int, str] | None
    delivered: bool

    @property
    def kind(self) -> ReplyKind:
        """Classification of the message as a whole (``ok`` when delivered)."""
        if self.final_reply is not None:
            return Reply(*self.final_reply).kind
        kinds = [kind for _, _, kind in self.rejected.values()]
        for urgent in (ReplyKind.AUTH, ReplyKind.QUOTA, ReplyKind.RATE_LIMIT):
            if urgent in kinds:
                return urgent
        return ReplyKind.TRANSIENT if ReplyKind.TRANSIENT in kinds else ReplyKind.PERMANENT


@dataclass(slots=True)
class _Prepared:
    """An envelope turned into wire lines (before anything is sent)."""

    index: int
    mail_line: bytes
    rcpts: list[tuple[str, bytes]]
    body: bytes


@dataclass(slots=True)
class _InFlight:
    """A message whose DATA got 354: its body goes first in the next write."""

    msg: _Prepared
    accepted: list[str]
    rejected: dict[str, tuple[int, str, ReplyKind]]
    discard: bool = False  # the server said 354 although we have nothing to send


class SmtpSession:
    """An open, authenticated SMTP connection; reusable for many submissions.

    ``async with SmtpSession(endpoint) as s`` connects, does TLS, EHLO and AUTH, and says
    QUIT on exit. After a connection error or a 421 the session is no longer usable
    (:attr:`usable`); open a new one.
    """

    def __init__(self, endpoint: SmtpEndpoint, *, on_step: StepObserver | None = None) -> None:
        self.endpoint = endpoint
        self.extensions: dict[str, str] = {}
        self.tls_active = False
        self._on_step = on_step
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._broken = False
        self._in_transaction = False
        self._step_started = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_io = 0.0
        self._ascii_host = _ascii_host(endpoint.host)
        self.mail_sent_at: float | None = None
        """``time.monotonic()`` just after the first MAIL FROM of the latest
        :meth:`submit_many` was handed to the socket (None: it never was). Taken after the
        write, so that a thread switch before it cannot make the moment look earlier."""

    def __repr__(self) -> str:
        state = "open" if self.usable else "closed"
        ep = self.endpoint
        return f"<SmtpSession {ep.host}:{ep.port} tls={ep.effective_tls} {state}>"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def usable(self) -> bool:
        return self._writer is not None and not self._broken and not self._writer.is_closing()

    @property
    def supports_pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    # --- opening ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, TLS, EHLO, AUTH. Raises a :class:`TransportError` naming the step."""
        self._step_started = asyncio.get_running_loop().time()
        try:
            addresses = await self._resolve()
            await self._connect(addresses)
            if self.endpoint.effective_tls == "implicit":
                await self._start_tls("tls")
            greeting = await self._read("greeting")
            if greeting.code != SmtpCode.SERVICE_READY:
                raise self._reply_error("greeting", greeting)
            self._mark("greeting", str(greeting))
            await self._ehlo()
            if self.endpoint.effective_tls == "starttls":
                await self._starttls()
                await self._ehlo()
            if self.endpoint.has_credentials:
                await self._authenticate()
        except BaseException:
            self._abort()
            raise

    async def _resolve(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        port = self.endpoint.port
        try:
            async with asyncio.timeout(self.endpoint.timeout):
                infos = await loop.getaddrinfo(self._ascii_host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise MailTimeoutError(
                f"resolving {self.endpoint.host} took too long",
                step="resolve",
                hint=hint_for("resolve", None, exc=exc),
            ) from None
        except OSError as exc:
            raise MailConnectionError(
                f"cannot resolve {self.endpoint.host}: {exc.strerror or exc}",
                step="resolve",
                hint=hint_for("resolve", None, exc=exc),
            ) from None
        addresses = list(dict.fromkeys((str(info[4][0]), port) for info in infos))
        self._mark("resolve", ", ".join(a for a, _ in addresses))
        return addresses

    async def _connect(self, addresses: list[tuple[str, int]]) -> None:
        last: OSError | None = None
        try:
            async with asyncio.timeout(self.endpoint.timeout):
                for address, port in addresses:
                    try:
                        self._reader, self._writer = await asyncio.open_connection(address, port)
                    except OSError as exc:
                        last = exc
                        continue
                    self._mark("connect", f"connected to {address} port {port}")
                    return
        except TimeoutError as exc:
            raise MailTimeoutError(
                f"no TCP connection to {self.endpoint.host}:{self.endpoint.port} within "
                f"{self.endpoint.timeout:g} s",
                step="connect",
                hint=hint_for("connect", None, exc=exc),
            ) from None
        assert last is not None
        raise MailConnectionError(
            f"cannot connect to {self.endpoint.host}:{self.endpoint.port}: {last.strerror or last}",
            step="connect",
            hint=hint_for("connect", None, exc=last),
        ) from None

    async def _start_tls(self, step: str) -> None:
        writer = self._writer
        assert writer is not None
        try:
            context = client_context(self.endpoint.ca_bundle_pem)
        except ValueError as exc:
            raise TlsError(str(exc), step=step, hint=hint_for(step, None, exc=exc)) from None
        try:
            async with asyncio.timeout(self.endpoint.timeout):
                await writer.start_tls(
                    context,
                    server_hostname=self._ascii_host,
                    ssl_handshake_timeout=self.endpoint.timeout,
                )
        except ssl.SSLCertVerificationError as exc:
            raise TlsError(
                f"certificate not trusted: {exc.verify_message or exc.reason}",
                step=step,
                hint=hint_for(step, None, exc=exc),
            ) from None
        except ssl.SSLError as exc:
            raise TlsError(
                f"TLS handshake failed: {exc}",
                step=step,
                hint=hint_for(step, None, exc=exc),
            ) from None
        except TimeoutError as exc:
            raise MailTimeoutError(
                f"TLS handshake did not finish within {self.endpoint.timeout:g} s",
                step=step,
                hint=hint_for(step, None, exc=exc),
            ) from None
        except (OSError, EOFError) as exc:
            raise TlsError(
                f"the server closed the connection during the TLS handshake: {exc}",
                step=step,
                hint=hint_for(step, None, exc=ConnectionResetError()),
            ) from None
        self.tls_active = True
        ssl_object = writer.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else "TLS"
        self._mark(step, f"{version}, certificate for {self.endpoint.host} verified")

    async def _ehlo(self) -> None:
        name = self.endpoint.local_hostname or self._address_literal()
        reply = await self._command(f"EHLO {name}\r\n".encode("ascii", "replace"), "ehlo")
        if reply.code in (SmtpCode.SYNTAX_ERROR, SmtpCode.NOT_IMPLEMENTED):
            reply = await self._command(f"HELO {name}\r\n".encode("ascii", "replace"), "ehlo")
            self.extensions = {}
        elif reply.ok:
            self.extensions = parse_ehlo(reply.text)
        if not reply.ok:
            raise self._reply_error("ehlo", reply)
        offered = " ".join(
            f"{k} {v}".strip() if k == "AUTH" else k for k, v in self.extensions.items()
        )
        self._mark("ehlo", f"offers: {offered}" if offered else "no extensions (HELO)")

    async def _starttls(self) -> None:
        if "STARTTLS" not in self.extensions:
            raise TlsError(
                "the server does not offer STARTTLS; credentials were not sent",
                step="starttls",
                hint=hint_for("starttls", None, exc=LocalProblem.STARTTLS_NOT_OFFERED),
            )
        reply = await self._command(b"STARTTLS\r\n", "starttls")
        if reply.code != SmtpCode.SERVICE_READY:
            raise TlsError(
                "the server refused STARTTLS",
                step="starttls",
                code=reply.code,
                server_reply=str(reply),
                hint=hint_for("starttls", reply.code, reply.text),
            )
        await self._start_tls("starttls")

    async def _authenticate(self) -> None:
        ep = self.endpoint
        if not self.tls_active and not ep.allow_plaintext_auth:
            raise TlsError(
                "refused to send credentials without TLS",
                step="auth",
                hint=hint_for("auth", None, exc=LocalProblem.PLAINTEXT_AUTH_REFUSED),
            )
        mechanism = smtp_auth.choose_mechanism(auth_mechanisms(self.extensions), ep.uses_xoauth2)
        if mechanism is None:
            raise AuthError(
                "the server offers no usable sign-in method"
                + (" (XOAUTH2 needed)" if ep.uses_xoauth2 else ""),
                step="auth",
                hint=hint_for("auth", None, exc=LocalProblem.AUTH_NOT_OFFERED),
            )
        if mechanism == "XOAUTH2":
            reply = await self._auth_xoauth2()
        elif mechanism == "PLAIN":
            reply = await self._auth_plain()
        else:
            reply = await self._auth_login()
        if reply.code == SmtpCode.AUTH_CONTINUE:
            reply = await self._command(b"*\r\n", "auth")  # cancel an exchange we cannot finish
        if reply.code != SmtpCode.AUTH_SUCCESSFUL:
            raise self._reply_error("auth", reply)
        self._mark("auth", f"signed in as {ep.username} with {mechanism}")

    def _password(self) -> str:
        password = self.endpoint.password
        return password.get_secret_value() if password is not None else ""

    async def _auth_plain(self) -> Reply:
        payload = smtp_auth.plain_payload(self.endpoint.username, self._password())
        reply = await self._command(b"AUTH PLAIN " + payload + _CRLF, "auth")
        if reply.code == SmtpCode.AUTH_CONTINUE:
            reply = await self._command(payload + _CRLF, "auth")
        return reply

    async def _auth_login(self) -> Reply:
        reply = await self._command(b"AUTH LOGIN\r\n", "auth")
        if reply.code == SmtpCode.AUTH_CONTINUE:
            reply = await self._command(smtp_auth.b64(self.endpoint.username) + _CRLF, "auth")
        if reply.code == SmtpCode.AUTH_CONTINUE:
            reply = await self._command(smtp_auth.b64(self._password()) + _CRLF, "auth")
        return reply

    async def _auth_xoauth2(self) -> Reply:
        reply = await self._xoauth2_attempt(await self._token(force_refresh=False))
        if reply.code != SmtpCode.AUTH_SUCCESSFUL and reply.kind is ReplyKind.AUTH:
            # A rejected token is refreshed once and retried (it may have just expired).
            reply = await self._xoauth2_attempt(await self._token(force_refresh=True))
        return reply

    async def _xoauth2_attempt(self, token: str) -> Reply:
        payload = smtp_auth.xoauth2_payload(self.endpoint.username, token)
        reply = await self._command(b"AUTH XOAUTH2 " + payload + _CRLF, "auth")
        if reply.code == SmtpCode.AUTH_CONTINUE:
            # Google/Microsoft answer a bad token with a base64 JSON challenge; an empty
            # line ends the exchange and brings the final 535.
            reply = await self._command(_CRLF, "auth")
        return reply

    async def _token(self, *, force_refresh: bool) -> str:
        provider = self.endpoint.token_provider
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

    # --- transactions -------------------------------------------------------------------

    async def mail_from(self, address: str) -> Reply:
        """``MAIL FROM`` alone (Test Connection). Raises ReplyError on refusal."""
        utf8 = needs_smtputf8(address)
        line = self._mail_line(address, utf8, b"", step="mail_from")
        reply = await self._command(line, "mail_from")
        if not reply.ok:
            raise self._reply_error("mail_from", reply)
        self._in_transaction = True
        self._mark("mail_from", str(reply))
        return reply

    async def rcpt_to(self, address: str) -> Reply:
        """``RCPT TO`` alone (Test Connection). Raises ReplyError on refusal."""
        line = self._rcpt_line(address, needs_smtputf8(address))
        reply = await self._command(line, "rcpt_to")
        if not reply.ok:
            raise self._reply_error("rcpt_to", reply, recipient=address)
        self._mark("rcpt_to", str(reply))
        return reply

    async def rset(self) -> Reply:
        reply = await self._command(b"RSET\r\n", "rset")
        self._in_transaction = False
        self._mark("rset", str(reply))
        return reply

    async def noop(self) -> Reply:
        """A cheap round trip: checks that a reused connection is still alive."""
        return await self._command(b"NOOP\r\n", "noop")

    async def submit(
        self, envelope_from: str, recipients: Sequence[str], data: bytes
    ) -> SubmitResult:
        """Submit one message. Returns a :class:`SubmitResult` (also when the server refused
        recipients or the data); raises a :class:`TransportError` when MAIL FROM was refused,
        nothing could be sent, or :class:`DeliveryUnknown` when the link broke after the
        data went out."""
        (result,) = await self.submit_many([Envelope(envelope_from, list(recipients), data)])
        if isinstance(result, TransportError):
            raise result
        return result

    async def submit_many(
        self, batch: Sequence[Envelope], *, not_before: float | None = None
    ) -> list[SubmitResult | TransportError]:
        """Submit several messages over this connection, one outcome per envelope, in order.

        With PIPELINING the commands of each message go out in one write, and the next
        message's commands follow its predecessor's data: one round trip per message.
        A connection error ends the batch: the message in flight becomes
        :class:`DeliveryUnknown`, later ones a :class:`MailConnectionError` (not sent).

        ``not_before`` (``time.monotonic()`` seconds): nothing is written earlier. The
        commands are prepared before the wait, so the first write follows it at once;
        :attr:`mail_sent_at` then says when it happened (what pacing counts from).
        """
        self.mail_sent_at = None
        results: list[SubmitResult | TransportError | None] = [None] * len(batch)
        todo: list[_Prepared] = []
        for index, envelope in enumerate(batch):
            try:
                todo.append(self._prepare(index, envelope))
            except TransportError as exc:
                results[index] = exc
        if todo:
            if not self.usable:
                raise MailConnectionError("the SMTP session is not open", step="mail_from")
            if not_before is not None:
                await _wait_until(not_before)
            self._arm_watchdog()
            try:
                if self.supports_pipelining:
                    await self._run_pipelined(todo, results)
                else:
                    await self._run_lockstep(todo, results)
            finally:
                self._disarm_watchdog()
        return [r if r is not None else _not_sent() for r in results]

    def _prepare(self, index: int, envelope: Envelope) -> _Prepared:
        if not envelope.recipients:
            raise ReplyError(
                "a message needs at least one recipient",
                kind=ReplyKind.PERMANENT,
                step="rcpt_to",
                hint=hint_for("rcpt_to", None, exc=LocalProblem.INVALID_ADDRESS),
            )
        addresses = [envelope.envelope_from, *envelope.recipients]
        utf8 = any(needs_smtputf8(a) for a in addresses)
        if utf8 and "SMTPUTF8" not in self.extensions:
            step = "mail_from" if needs_smtputf8(envelope.envelope_from) else "rcpt_to"
            raise SmtpUtf8Required(
                "an address needs SMTPUTF8, which the server does not offer; nothing was sent",
                step=step,
                hint=hint_for(step, None, exc=LocalProblem.SMTPUTF8_NOT_OFFERED),
            )
        params = b""
        if not envelope.data.isascii() and "8BITMIME" in self.extensions:
            params += b" BODY=8BITMIME"
        body = frame_data(envelope.data)
        if "SIZE" in self.extensions:
            params += b" SIZE=%d" % len(body)
        mail_line = self._mail_line(envelope.envelope_from, utf8, params, step="mail_from")
        rcpts = [(r, self._rcpt_line(r, utf8)) for r in envelope.recipients]
        return _Prepared(index, mail_line, rcpts, body)

    def _mail_line(self, address: str, utf8: bool, params: bytes, *, step: str) -> bytes:
        if utf8:
            if "SMTPUTF8" not in self.extensions:
                raise SmtpUtf8Required(
                    "an address needs SMTPUTF8, which the server does not offer",
                    step=step,
                    hint=hint_for(step, None, exc=LocalProblem.SMTPUTF8_NOT_OFFERED),
                )
            params = b" SMTPUTF8" + params
        try:
            wire = wire_address(address, utf8)
        except AddressProblem as exc:
            raise ReplyError(
                f"invalid sender address: {exc}",
                kind=ReplyKind.PERMANENT,
                step="mail_from",
                hint=hint_for("mail_from", None, exc=LocalProblem.INVALID_ADDRESS),
            ) from None
        return b"MAIL FROM:<" + wire.encode("utf-8") + b">" + params + _CRLF

    def _rcpt_line(self, address: str, utf8: bool) -> bytes:
        if utf8 and "SMTPUTF8" not in self.extensions:
            raise SmtpUtf8Required(
                "a recipient address needs SMTPUTF8, which the server does not offer",
                step="rcpt_to",
                hint=hint_for("rcpt_to", None, exc=LocalProblem.SMTPUTF8_NOT_OFFERED),
            )
        try:
            wire = wire_address(address, utf8)
        except AddressProblem as exc:
            raise ReplyError(
                f"invalid recipient address: {exc}",
                kind=ReplyKind.PERMANENT,
                step="rcpt_to",
                recipient=address,
                hint=hint_for("rcpt_to", None, exc=LocalProblem.INVALID_ADDRESS),
            ) from None
        return b"RCPT TO:<" + wire.encode("utf-8") + b">" + _CRLF

    async def _run_lockstep(
        self, todo: list[_Prepared], results: list[SubmitResult | TransportError | None]
    ) -> None:
        for msg in todo:
            if not self.usable:
                return
            try:
                results[msg.index] = await self._transaction_lockstep(msg)
            except TransportError as exc:
                results[msg.index] = exc

    async def _transaction_lockstep(self, msg: _Prepared) -> SubmitResult:
        if self._in_transaction:
            await self._rset_quietly()
        mail = await self._command(msg.mail_line, "mail_from")
        if not mail.ok:
            raise self._reply_error("mail_from", mail)
        self._in_transaction = True
        accepted: list[str] = []
        rejected: dict[str, tuple[int, str, ReplyKind]] = {}
        for address, line in msg.rcpts:
            reply = await self._command(line, "rcpt_to")
            if reply.ok:
                accepted.append(address)
            else:
                rejected[address] = (reply.code, reply.text, reply.kind)
                if self._broken:  # 421: the server is closing the connection
                    raise self._reply_error("rcpt_to", reply, recipient=address)
        if not accepted:
            await self._rset_quietly()
            return SubmitResult(accepted, rejected, None, delivered=False)
        data = await self._command(b"DATA\r\n", "data")
        if data.code != SmtpCode.START_MAIL_INPUT:
            await self._rset_quietly()
            return SubmitResult(accepted, rejected, (data.code, data.text), delivered=False)
        try:
            await self._write(msg.body, "data")
            final = await self._read("data")
        except TransportError as exc:
            raise _unknown(exc) from None
        self._in_transaction = False
        return SubmitResult(accepted, rejected, (final.code, final.text), delivered=final.ok)

    async def _rset_quietly(self) -> None:
        if self.usable:
            await self._command(b"RSET\r\n", "rset")
            self._in_transaction = False

    async def _run_pipelined(
        self, todo: list[_Prepared], results: list[SubmitResult | TransportError | None]
    ) -> None:
        queue = deque(todo)
        pending: _InFlight | None = None
        need_rset = self._in_transaction
        while queue or pending is not None:
            chunks: list[bytes] = []
            if pending is not None:
                chunks.append(b".\r\n" if pending.discard else pending.msg.body)
            current: _Prepared | None = None
            if queue and not self._broken:
                current = queue.popleft()
                if need_rset:
                    chunks.append(b"RSET\r\n")
                chunks.append(current.mail_line)
                chunks.extend(line for _, line in current.rcpts)
                chunks.append(b"DATA\r\n")
            try:
                await self._write(b"".join(chunks), "data" if pending else "mail_from")
            except TransportError as exc:
                if pending is not None and not pending.discard:
                    results[pending.msg.index] = _unknown(exc)
                if current is not None:
                    results[current.index] = exc if pending is None else _not_sent()
                return
            if pending is not None:
                try:
                    final = await self._read("data")
                except TransportError as exc:
                    if not pending.discard:
                        results[pending.msg.index] = _unknown(exc)
                    return
                if pending.discard:
                    need_rset = True
                else:
                    results[pending.msg.index] = SubmitResult(
                        pending.accepted,
                        pending.rejected,
                        (final.code, final.text),
                        delivered=final.ok,
                    )
                pending = None
                if current is not None and self._broken:
                    return  # 421 after the data: the server is closing; current not sent
            if current is None:
                continue
            try:
                pending, need_rset = await self._read_transaction_replies(
                    current, need_rset, results
                )
            except TransportError as exc:
                results[current.index] = exc
                return
            if self._broken:
                return
        self._in_transaction = need_rset

    async def _read_transaction_replies(
        self,
        msg: _Prepared,
        rset_sent: bool,
        results: list[SubmitResult | TransportError | None],
    ) -> tuple[_InFlight | None, bool]:
        """Read the replies to [RSET] MAIL RCPT... DATA; return (in-flight, need_rset)."""
        if rset_sent:
            rset = await self._read("rset")
            if self._broken:
                raise self._reply_error("rset", rset)
        mail = await self._read("mail_from")
        if self._broken:
            raise self._reply_error("mail_from", mail)
        accepted: list[str] = []
        rejected: dict[str, tuple[int, str, ReplyKind]] = {}
        for address, _ in msg.rcpts:
            reply = await self._read("rcpt_to")
            if self._broken:
                raise self._reply_error("rcpt_to", reply, recipient=address)
            if reply.ok:
                accepted.append(address)
            else:
                rejected[address] = (reply.code, reply.text, reply.kind)
        data = await self._read("data")
        if self._broken:
            raise self._reply_error("data", data)
        went_354 = data.code == SmtpCode.START_MAIL_INPUT
        if not mail.ok:
            results[msg.index] = self._reply_error("mail_from", mail)
            return (_InFlight(msg, [], {}, discard=True) if went_354 else None), False
        if not accepted:
            results[msg.index] = SubmitResult([], rejected, None, delivered=False)
            return (_InFlight(msg, [], {}, discard=True) if went_354 else None), True
        if not went_354:
            results[msg.index] = SubmitResult(
                accepted, rejected, (data.code, data.text), delivered=False
            )
            return None, True
        return _InFlight(msg, accepted, rejected), False

    # --- closing ------------------------------------------------------------------------

    async def quit(self) -> None:
        """Say QUIT (best effort, short timeout) and close the connection."""
        if self.usable:
            try:
                async with asyncio.timeout(min(self.endpoint.timeout, _QUIT_TIMEOUT)):
                    reply = await self._command(b"QUIT\r\n", "quit")
                self._mark("quit", str(reply))
            except (TransportError, TimeoutError):
                pass
            self._broken = True
        await self.close()

    async def close(self) -> None:
        """QUIT if the session is healthy, then close the socket."""
        writer = self._writer
        if writer is None:
            return
        if self.usable:
            self._broken = True  # no reentry from quit()
            try:
                async with asyncio.timeout(min(self.endpoint.timeout, _QUIT_TIMEOUT)):
                    writer.write(b"QUIT\r\n")
                    await writer.drain()
                    await self._raw_reply()
            except (OSError, TimeoutError, EOFError, MalformedReply, asyncio.LimitOverrunError):
                pass
        self._writer = None
        self._broken = True
        writer.close()
        try:
            async with asyncio.timeout(min(self.endpoint.timeout, _QUIT_TIMEOUT)):
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            pass

    def _abort(self) -> None:
        writer, self._writer = self._writer, None
        self._broken = True
        if writer is not None:
            writer.transport.abort()

    # --- wire helpers -------------------------------------------------------------------

    def _mark(self, step: str, detail: str) -> None:
        now = asyncio.get_running_loop().time()
        if self._on_step is not None:
            self._on_step(step, (now - self._step_started) * 1000.0, detail)
        self._step_started = now

    def _address_literal(self) -> str:
        writer = self._writer
        sockname = writer.get_extra_info("sockname") if writer is not None else None
        if not sockname:
            return "localhost"
        address = str(sockname[0])
        return f"[IPv6:{address}]" if ":" in address else f"[{address}]"

    async def _command(self, line: bytes, step: str) -> Reply:
        await self._write(line, step)
        return await self._read(step)

    async def _write(self, data: bytes, step: str) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            self._broken = True
            raise MailConnectionError(
                "the connection is closed", step=step, hint=_closed_hint(step)
            )
        try:
            writer.write(data)
            if step == "mail_from" and self.mail_sent_at is None:
                self.mail_sent_at = time.monotonic()
            if self._watchdog is not None:
                self._last_io = asyncio.get_running_loop().time()
            if writer.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                async with asyncio.timeout(self.endpoint.timeout):
                    await writer.drain()
        except TimeoutError:
            self._broken = True
            raise MailTimeoutError(
                f"the server stopped reading for {self.endpoint.timeout:g} s", step=step
            ) from None
        except OSError as exc:
            self._broken = True
            raise MailConnectionError(
                f"the connection broke: {exc}", step=step, hint=_closed_hint(step)
            ) from None

    async def _raw_reply(self) -> Reply:
        reader = self._reader
        assert reader is not None
        lines = [await reader.readuntil(b"\n")]
        while not is_last_line(lines[-1]):
            lines.append(await reader.readuntil(b"\n"))
        return parse_reply(lines)

    def _arm_watchdog(self) -> None:
        """Replace per-reply timers by one inactivity timer for a burst of submissions:
        ``asyncio.timeout`` per reply costs about a quarter of the client's CPU time."""
        loop = asyncio.get_running_loop()
        self._last_io = loop.time()
        self._watchdog = loop.call_at(self._last_io + self.endpoint.timeout, self._bark)

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _bark(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._last_io + self.endpoint.timeout
        if loop.time() < due:
            self._watchdog = loop.call_at(due, self._bark)
        elif self._reader is not None:
            self._watchdog = None
            self._reader.set_exception(TimeoutError())  # the pending read raises it

    async def _read(self, step: str) -> Reply:
        """Read one reply within the timeout. A 421 marks the session unusable."""
        try:
            if self._watchdog is None:
                async with asyncio.timeout(self.endpoint.timeout):
                    reply = await self._raw_reply()
            else:
                reply = await self._raw_reply()
                self._last_io = asyncio.get_running_loop().time()
        except TimeoutError as exc:
            self._broken = True
            raise MailTimeoutError(
                f"no reply from the server within {self.endpoint.timeout:g} s",
                step=step,
                hint=hint_for(step, None, exc=exc),
            ) from None
        except (asyncio.IncompleteReadError, OSError) as exc:
            self._broken = True
            raise MailConnectionError(
                "the server closed the connection", step=step, hint=_closed_hint(step, exc)
            ) from None
        except (MalformedReply, asyncio.LimitOverrunError, ValueError):
            self._broken = True
            raise MailConnectionError(
                "the server's answer is not SMTP", step=step, hint=_closed_hint(step)
            ) from None
        if reply.code == SmtpCode.SERVICE_UNAVAILABLE:
            self._broken = True
        return reply

    def _reply_error(
        self, step: str, reply: Reply, *, recipient: str | None = None
    ) -> TransportError:
        kind = reply.kind
        hint = hint_for(step, reply.code, reply.text)
        message = f"{step.replace('_', ' ')} refused: {reply}"
        if kind is ReplyKind.AUTH and step == "auth":
            return AuthError(
                message, step=step, code=reply.code, server_reply=str(reply), hint=hint
            )
        return ReplyError(
            message,
            kind=kind,
            step=step,
            code=reply.code,
            server_reply=str(reply),
            hint=hint,
            recipient=recipient,
        )


async def _wait_until(deadline: float) -> None:
    """Sleep until the monotonic time ``deadline``: a timer for the most of it, then
    yielding to the loop (other sessions keep running) for the last moments."""
    rest = deadline - _SPIN - time.monotonic()
    if rest > 0:
        await asyncio.sleep(rest)
    while time.monotonic() < deadline:  # noqa: ASYNC110 - a deadline, not an event
        await asyncio.sleep(0)


def _ascii_host(host: str) -> str:
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        return host


def _closed_hint(step: str, exc: BaseException | None = None) -> str:
    return hint_for(step, None, exc=exc if exc is not None else ConnectionResetError())


def _unknown(cause: TransportError) -> DeliveryUnknown:
    return DeliveryUnknown(
        "the link broke after the message data was sent; the server may have accepted it "
        f"({cause})",
        step="data",
        hint="Check the recipient's mailbox or the Sent folder, then choose 'send again' or "
        "'mark as sent'.",
    )


def _not_sent() -> MailConnectionError:
    return MailConnectionError(
        "not sent: the connection was lost before this message",
        step="mail_from",
        hint="The message will be sent again over a new connection.",
    )
