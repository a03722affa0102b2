"""A blocking IMAP session, step by step (run it in a worker thread).

Built on the standard library's ``imaplib``: maintained with Python, covers STARTTLS, implicit
TLS, AUTHENTICATE and literals, and each call here is short and bounded by a socket timeout.
Every failure leaves as a :mod:`sendas.errors` class naming its ``step`` with a hint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import imaplib
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from sendas.errors import MailConnectionError, TransportError
from sendas.imap import replies
from sendas.imap.endpoint import ImapEndpoint, ResolvedTlsMode, tls_context
from sendas.imap.folders import (
    Folder,
    choose_sent_folder,
    match_folder,
    parse_list_response,
    quote_mailbox,
    wire_name,
)
from sendas.imap.replies import Step, reply_text
from sendas.net.tls_modes import IMPLICIT, STARTTLS, tls_label
from sendas.steps import StepDraft, StepRecorder

# How long the login waits for an access token (a refresh may be under way), in IMAP timeouts.
TOKEN_WAIT_FACTOR = 2


class _PreconnectedIMAP4(imaplib.IMAP4):
    """imaplib over a socket we opened (and maybe wrapped in TLS) ourselves, so TCP connect
    and TLS handshake fail as separate steps."""

    def __init__(self, sock: socket.socket, host: str, port: int, timeout: float) -> None:
        self._presock = sock
        super().__init__(host, port, timeout)

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        self.host = host
        self.port = port
        self.sock = self._presock
        self.file = self.sock.makefile("rb")


def _xoauth2_attempt(imap: imaplib.IMAP4, username: str, token: str) -> None:
    """``AUTHENTICATE XOAUTH2``; raises imaplib's error when the server says NO.

    A server refusing the token first sends an error challenge (base64 JSON); the empty
    line answering it ends the exchange and brings the NO.
    """
    answers = iter([f"user={username}\x01auth=Bearer {token}\x01\x01".encode()])
    imap.authenticate("XOAUTH2", lambda _challenge: next(answers, b""))


def open_socket(ep: ImapEndpoint) -> socket.socket:
    """Resolve once, drop the addresses the outbound policy refuses (raising
    :class:`~sendas.errors.OutboundRefused` when none is left), and connect to the ones kept
    as resolved: no second lookup, so DNS rebinding cannot change the address checked.
    Raises ``OSError`` when no address can be reached."""
    infos = socket.getaddrinfo(ep.connect_host, ep.port, type=socket.SOCK_STREAM)
    if ep.outbound is not None:
        allowed = ep.outbound.check(ep.host, [str(i[4][0]) for i in infos], step="connect")
        infos = [i for i in infos if str(i[4][0]) in allowed]
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(ep.timeout)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise last or OSError("no address to connect to")


def _greets_within(sock: socket.socket, wait: float, timeout: float) -> bool:
    """Whether the server sends anything (its greeting, left unread) within ``wait`` seconds;
    a server that stays silent expects a TLS handshake. A closed link counts as an answer,
    so the greeting step reports it."""
    sock.settimeout(min(wait, timeout))
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        greeted = False
    except OSError:
        sock.close()  # the step reports the error; the socket is ours to close
        raise
    else:
        greeted = True
    sock.settimeout(timeout)
    return greeted


def _message_date(raw: bytes) -> str:
    """The message's Date header as an IMAP date-time, so the copy is filed under the time it
    was sent even when it is made later; ``""`` (the server's clock) when missing or bad."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        value = headers.get("Date")
        if not value:
            return ""
        when = email.utils.parsedate_to_datetime(str(value))
        return imaplib.Time2Internaldate(when) if when.tzinfo is not None else ""
    except (TypeError, ValueError, IndexError, OverflowError):
        return ""


@dataclass
class ImapSession:
    """One connection, walked step by step; each step is timed in ``recorder``."""

    endpoint: ImapEndpoint
    recorder: StepRecorder = field(default_factory=StepRecorder)
    imap: imaplib.IMAP4 | None = None
    capabilities: frozenset[str] = frozenset()
    folders: list[Folder] = field(default_factory=list)
    # Set when the link itself failed: LOGOUT would only wait for a reply that never comes.
    broken: bool = False
    # The event loop that owns the endpoint's token provider (the session runs in a thread).
    loop: asyncio.AbstractEventLoop | None = None
    # The encryption the connection used (``auto`` resolved), once decided.
    tls_found: ResolvedTlsMode | None = None

    @contextlib.contextmanager
    def _step(self, name: Step, detail: str = "") -> Iterator[StepDraft]:
        """Run one step; any failure leaves as a TransportError naming it, with a hint."""
        with self.recorder.step(name, detail) as draft:
            try:
                yield draft
            except TransportError as exc:
                # MailConnectionError covers TlsError; MailTimeoutError is a TimeoutError.
                self.broken = self.broken or isinstance(exc, MailConnectionError | TimeoutError)
                raise
            except (OSError, imaplib.IMAP4.error) as exc:
                # A refused command leaves the link usable; anything else broke it.
                refused = not isinstance(exc, OSError | imaplib.IMAP4.abort)
                self.broken = self.broken or not refused
                raise replies.step_failure(exc, name, self.endpoint) from exc

    # --- connect and TLS ------------------------------------------------------------------

    def connect(self) -> None:
        """TCP connect, TLS (implicit or STARTTLS) and the server greeting."""
        ep = self.endpoint
        mode = ep.tls_mode
        with self._step("connect", f"{ep.host}:{ep.port} ({tls_label(ep.tls)})"):
            try:
                sock = open_socket(ep)
            except OSError as exc:
                raise replies.connect_failure(exc, ep) from exc
            silent = ep.detects_tls and not _greets_within(sock, ep.detect_wait, ep.timeout)
            if ep.detects_tls:
                mode = "implicit" if silent else "starttls"
            self.tls_found = mode
            if mode != "implicit":
                self.imap = self._greet(sock, "connect")
                if mode == "none":
                    self._refresh_capabilities()

        if mode == "implicit":
            how = f"{IMPLICIT} (the server was silent after connect)" if silent else IMPLICIT
            with self._step("tls", how):
                tls_sock = self._handshake(sock)
                self.imap = self._greet(tls_sock, "tls")
                self._refresh_capabilities()
        elif mode == "starttls":
            with self._step("tls", STARTTLS):
                self._starttls()
                self._refresh_capabilities()

    def _handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        ep = self.endpoint
        try:
            ctx = tls_context(ep.ca_bundle_pem)
            return ctx.wrap_socket(sock, server_hostname=ep.connect_host)
        except (OSError, ValueError) as exc:
            sock.close()
            raise replies.tls_failure(exc, "tls", ep) from exc

    def _greet(self, sock: socket.socket, step: Step) -> imaplib.IMAP4:
        ep = self.endpoint
        try:
            return _PreconnectedIMAP4(sock, ep.connect_host, ep.port, ep.timeout)
        except (imaplib.IMAP4.error, OSError) as exc:
            sock.close()
            raise replies.greeting_failure(exc, step, ep) from exc

    def _starttls(self) -> None:
        imap = self._require()
        if "STARTTLS" not in imap.capabilities:
            raise replies.starttls_missing()
        try:
            imap.starttls(tls_context(self.endpoint.ca_bundle_pem))
        except (ssl.SSLError, TimeoutError, ValueError, imaplib.IMAP4.abort) as exc:
            raise replies.tls_failure(exc, "tls", self.endpoint) from exc
        except imaplib.IMAP4.error as exc:
            raise replies.starttls_refused(exc) from exc

    def _refresh_capabilities(self) -> None:
        imap = self._require()
        typ, data = imap.capability()
        if typ == "OK" and data and isinstance(data[-1], bytes):
            self.capabilities = frozenset(data[-1].decode("ascii", "replace").upper().split())
        else:
            self.capabilities = frozenset(c.upper() for c in imap.capabilities)

    def _require(self) -> imaplib.IMAP4:
        if self.imap is None:
            raise RuntimeError("not connected")
        return self.imap

    # --- login ----------------------------------------------------------------------------

    def login(self) -> None:
        """Authenticate: with the endpoint's token provider XOAUTH2 (a rejected token is
        refreshed once and retried); otherwise AUTHENTICATE PLAIN when offered (UTF-8 safe),
        LOGIN else. The step's detail says ``(XOAUTH2)`` for a token login.

        Token failures leave as the provider raised them (ReauthRequired,
        ProviderUnavailable...), re-labelled as step ``login``.
        """
        ep = self.endpoint
        detail = f"{ep.username} (XOAUTH2)" if ep.uses_xoauth2 else ep.username
        with self._step("login", detail):
            imap = self._require()
            if ep.tls_mode == "none" and not ep.allow_plaintext_password:
                raise replies.plaintext_refused()
            if ep.uses_xoauth2:
                self._xoauth2(imap)
            else:
                self._password_login(imap)
            # The capabilities change once logged in (SPECIAL-USE, LIST-EXTENDED...).
            self._refresh_capabilities()

    def _password_login(self, imap: imaplib.IMAP4) -> None:
        ep = self.endpoint
        if "LOGINDISABLED" in self.capabilities:
            raise replies.login_disabled()
        user = ep.username
        password = ep.password.get_secret_value()
        try:
            if "AUTH=PLAIN" in self.capabilities:
                token = b"\0" + user.encode() + b"\0" + password.encode()
                imap.authenticate("PLAIN", lambda _challenge: token)
            elif user.isascii() and password.isascii():
                imap.login(user, password)
            else:
                raise replies.ascii_only()
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise replies.login_refused(reply_text(exc), ep) from None

    def _xoauth2(self, imap: imaplib.IMAP4) -> None:
        if "AUTH=XOAUTH2" not in self.capabilities:
            raise replies.xoauth2_not_offered()
        try:
            _xoauth2_attempt(imap, self.endpoint.username, self._token(force_refresh=False))
            return
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:
            pass  # a rejected token is refreshed once and retried (it may have just expired)
        try:
            _xoauth2_attempt(imap, self.endpoint.username, self._token(force_refresh=True))
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise replies.token_refused(reply_text(exc), self.endpoint) from None

    def _token(self, *, force_refresh: bool) -> str:
        """An access token from the endpoint's (async) provider, run on ``self.loop`` when
        the session works in a thread for it."""
        provider = self.endpoint.token_provider
        assert provider is not None

        async def get() -> str:
            return await provider(force_refresh)

        try:
            if self.loop is None:
                return asyncio.run(get())
            pending = asyncio.run_coroutine_threadsafe(get(), self.loop)
            try:
                return pending.result(timeout=TOKEN_WAIT_FACTOR * self.endpoint.timeout)
            except concurrent.futures.TimeoutError:
                pending.cancel()
                raise replies.token_timeout() from None
        except TransportError as exc:
            exc.step = "login"  # the IMAP step it stopped, as the test result shows it
            raise
        except Exception as exc:
            raise replies.token_unavailable(exc) from exc

    # --- folders --------------------------------------------------------------------------

    def list_folders(self) -> list[Folder]:
        imap = self._require()
        if {"SPECIAL-USE", "LIST-EXTENDED"} <= self.capabilities:
            # RFC 6154: only this form obliges the server to return the attributes.
            imap.response("LIST")  # drop stale untagged LIST data
            try:
                typ, _ = imap.xatom("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error:
                typ = "BAD"  # fall back to a plain LIST below
            _, listed = imap.response("LIST")
            if typ == "OK":
                return parse_list_response(listed or [])
        typ, data = imap.list('""', '"*"')
        if typ != "OK":
            raise replies.list_refused(reply_text(data[-1] if data else ""))
        return parse_list_response(data)

    def find_sent(self) -> Folder:
        """The Sent folder: the account's setting, else SPECIAL-USE ``\\Sent``, else a name.

        The step's detail names it, e.g. ``Sent folder: Sent (SPECIAL-USE \\Sent)``.
        """
        wanted = self.endpoint.sent_folder
        with self._step("find_sent") as draft:
            self.folders = self.list_folders()
            if wanted:
                found = match_folder(self.folders, wanted)
                if found is None:
                    raise replies.sent_folder_missing(wanted, self._folder_names())
                how = "account setting"
            else:
                found = choose_sent_folder(self.folders)
                if found is None:
                    raise replies.no_sent_folder(self._folder_names())
                how = "SPECIAL-USE \\Sent" if found.is_sent else "by name"
            draft.detail = f"Sent folder: {found.name} ({how})"
            return found

    def _folder_names(self) -> str:
        names = [f.name for f in self.folders if f.selectable]
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        return shown or "none"

    # --- append ---------------------------------------------------------------------------

    def append(self, folder: Folder, raw: bytes) -> int | None:
        """APPEND ``raw`` to ``folder`` flagged ``\\Seen``; the new UID when the server says."""
        imap = self._require()
        with self._step("append", folder.name):
            mailbox = quote_mailbox(folder.raw or wire_name(folder.name))
            typ, data = imap.append(mailbox, "(\\Seen)", _message_date(raw), raw)
            reply = reply_text(data[-1] if data else "")
            if typ != "OK":
                raise replies.append_refused(reply, folder.name)
            match = re.search(r"\[APPENDUID \d+ (\d+)\]", reply, re.IGNORECASE)
            return int(match.group(1)) if match else None

    # --- end ------------------------------------------------------------------------------

    def close(self) -> None:
        """LOGOUT politely; never raises."""
        imap, self.imap = self.imap, None
        if imap is None:
            return
        if self.broken:
            with contextlib.suppress(Exception):
                imap.shutdown()
            return
        try:
            imap.logout()
        except Exception:  # the work is done; a failing LOGOUT changes nothing
            with contextlib.suppress(Exception):
                imap.shutdown()
