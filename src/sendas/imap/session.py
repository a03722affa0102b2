"""A blocking IMAP session, step by step (run it in a worker thread).

Built on the standard library's ``imaplib``: maintained with Python, covers STARTTLS, implicit
TLS, AUTHENTICATE and literals, and each call here is short and bounded by a socket timeout.
Every failure leaves as a :mod:`sendas.errors` class naming its ``step`` with a hint.
"""

from __future__ import annotations

import contextlib
import email.utils
import imaplib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Literal

from sendas.errors import (
    AuthError,
    MailConnectionError,
    MailTimeoutError,
    ReplyError,
    TlsError,
    TransportError,
)
from sendas.imap.endpoint import ImapEndpoint, tls_context
from sendas.imap.folders import (
    Folder,
    choose_sent_folder,
    match_folder,
    parse_list_response,
    quote_mailbox,
    wire_name,
)

Step = Literal["connect", "tls", "login", "find_sent", "append"]


@dataclass
class StepRecord:
    """One step of a session: its name, outcome and duration."""

    step: Step
    status: Literal["OK", "FAILED"]
    ms: int
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "status": self.status, "ms": self.ms, "detail": self.detail}


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


def _text(value: object) -> str:
    """A server reply (bytes, str or exception args) as text."""
    if isinstance(value, BaseException):
        value = value.args[0] if len(value.args) == 1 else " ".join(map(str, value.args))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return str(value).strip()


def _code(reply: str) -> str:
    """The response code of a reply: ``[AUTHENTICATIONFAILED] ...`` -> ``AUTHENTICATIONFAILED``."""
    match = re.match(r"\s*\[([A-Za-z-]+)", reply)
    return match.group(1).upper() if match else ""


_TLS_PORT_HINT = (
    "The port does not speak implicit TLS. Port 993 uses implicit TLS; port 143 uses STARTTLS: "
    "choose the TLS mode that matches the port."
)
_NO_GREETING_HINT = (
    "The server accepted the connection but sent no IMAP greeting. If this is port 993 (or "
    "another implicit-TLS port), choose implicit TLS instead of STARTTLS."
)
_CONNECT_TIMEOUT_HINT = (
    "No answer from {where}: the port may be blocked by a firewall between this server and "
    "the mail server, or the host name or port is wrong."
)


def _tls_failure(exc: BaseException, step: Step, endpoint: ImapEndpoint) -> TransportError:
    """Translate a TLS handshake failure into a TlsError with a hint."""
    where = f"{endpoint.host}:{endpoint.port}"
    if isinstance(exc, TimeoutError):
        return MailTimeoutError(
            f"TLS handshake with {where} timed out",
            step=step,
            hint="The server did not complete the TLS handshake. Check that the TLS mode "
            "matches the port (993 implicit TLS, 143 STARTTLS).",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "verification failed"
        if exc.verify_code == 62 or "hostname" in reason.lower():  # X509_V_ERR_HOSTNAME_MISMATCH
            hint = (
                f"The server's certificate is not valid for the name {endpoint.host!r}: use "
                "the host name the certificate names (often the provider's documented IMAP "
                "host)."
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
            f"certificate of {where} not trusted: {reason}",
            step=step,
            server_reply=reason,
            hint=hint,
        )
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if "WRONG_VERSION_NUMBER" in str(reason).upper() or "wrong version number" in str(exc):
            return TlsError(
                f"TLS handshake with {where} failed: wrong version number",
                step=step,
                server_reply=str(reason),
                hint=_TLS_PORT_HINT,
            )
        return TlsError(
            f"TLS handshake with {where} failed: {reason}",
            step=step,
            server_reply=str(reason),
            hint="The TLS handshake failed. Check the TLS mode for this port (993 implicit TLS, "
            "143 STARTTLS) and that the server supports TLS 1.2 or newer.",
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
        server_reply=_text(exc),
        hint="The connection broke during the TLS handshake. Check the TLS mode for this port "
        "(993 implicit TLS, 143 STARTTLS).",
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
    """One connection, walked step by step; each step is recorded in ``steps``."""

    endpoint: ImapEndpoint
    steps: list[StepRecord] = field(default_factory=list)
    imap: imaplib.IMAP4 | None = None
    capabilities: frozenset[str] = frozenset()
    folders: list[Folder] = field(default_factory=list)
    # Set when the link itself failed: LOGOUT would only wait for a reply that never comes.
    broken: bool = False

    @contextlib.contextmanager
    def _step(self, name: Step, detail: str = "") -> Iterator[StepRecord]:
        record = StepRecord(name, "OK", 0, detail)
        started = time.monotonic()
        try:
            yield record
        except (MailConnectionError, MailTimeoutError):
            record.status = "FAILED"
            self.broken = True
            raise
        except TransportError:
            record.status = "FAILED"
            raise
        except TimeoutError as exc:
            record.status = "FAILED"
            self.broken = True
            raise MailTimeoutError(
                f"the server did not answer in time during {name}",
                step=name,
                hint="The server stopped answering. Try again later; if it persists, check the "
                "TLS mode for the port and the network between the servers.",
            ) from exc
        except imaplib.IMAP4.abort as exc:
            record.status = "FAILED"
            self.broken = True
            raise MailConnectionError(
                f"the server closed the connection during {name}",
                step=name,
                server_reply=_text(exc),
                hint="The server ended the connection. Try again later.",
            ) from exc
        except ssl.SSLError as exc:
            record.status = "FAILED"
            self.broken = True
            raise _tls_failure(exc, name, self.endpoint) from exc
        except OSError as exc:
            record.status = "FAILED"
            self.broken = True
            raise MailConnectionError(
                f"connection lost during {name}: {exc.__class__.__name__}",
                step=name,
                server_reply=_text(exc),
                hint="The connection broke. Try again later.",
            ) from exc
        except imaplib.IMAP4.error as exc:
            record.status = "FAILED"
            reply = _text(exc)
            raise ReplyError(
                f"the server refused a command during {name}",
                kind="permanent",
                step=name,
                server_reply=reply,
                hint="The server answered with an error; see its reply.",
            ) from exc
        finally:
            record.ms = round((time.monotonic() - started) * 1000)
            self.steps.append(record)

    # --- connect and TLS ------------------------------------------------------------------

    def connect(self) -> None:
        """TCP connect, TLS (implicit or STARTTLS) and the server greeting."""
        ep = self.endpoint
        mode = ep.tls_mode
        where = f"{ep.host}:{ep.port}"
        with self._step("connect", f"{where} ({mode})"):
            try:
                sock = socket.create_connection((ep.connect_host, ep.port), timeout=ep.timeout)
            except socket.gaierror as exc:
                raise MailConnectionError(
                    f"host {ep.host} not found",
                    step="connect",
                    server_reply=_text(exc),
                    hint="The host name could not be resolved: check its spelling.",
                ) from exc
            except TimeoutError as exc:
                raise MailTimeoutError(
                    f"no answer from {where}",
                    step="connect",
                    hint=_CONNECT_TIMEOUT_HINT.format(where=where),
                ) from exc
            except ConnectionRefusedError as exc:
                raise MailConnectionError(
                    f"{where} refused the connection",
                    step="connect",
                    server_reply=_text(exc),
                    hint=f"Nothing accepts connections on port {ep.port} of {ep.host}: check the "
                    "port (IMAP uses 993 with implicit TLS, 143 with STARTTLS).",
                ) from exc
            except OSError as exc:
                raise MailConnectionError(
                    f"could not connect to {where}: {exc.strerror or exc.__class__.__name__}",
                    step="connect",
                    server_reply=_text(exc),
                    hint="The server could not be reached: check the host, the port and the "
                    "network.",
                ) from exc
            if mode != "implicit":
                self.imap = self._greet(sock, "connect")
                if mode == "none":
                    self._refresh_capabilities()

        if mode == "implicit":
            with self._step("tls", "implicit TLS"):
                tls_sock = self._handshake(sock)
                self.imap = self._greet(tls_sock, "tls")
                self._refresh_capabilities()
        elif mode == "starttls":
            with self._step("tls", "STARTTLS"):
                self._starttls()
                self._refresh_capabilities()

    def _handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        ep = self.endpoint
        try:
            ctx = tls_context(ep.ca_bundle_pem)
            return ctx.wrap_socket(sock, server_hostname=ep.connect_host)
        except (OSError, ValueError) as exc:
            sock.close()
            raise _tls_failure(exc, "tls", ep) from exc

    def _greet(self, sock: socket.socket, step: Step) -> imaplib.IMAP4:
        ep = self.endpoint
        try:
            return _PreconnectedIMAP4(sock, ep.connect_host, ep.port, ep.timeout)
        except TimeoutError as exc:
            sock.close()
            hint = (
                _NO_GREETING_HINT
                if ep.tls_mode != "implicit"
                else ("The TLS connection opened but no IMAP greeting came: check the port.")
            )
            raise MailTimeoutError(
                "no IMAP greeting from the server", step=step, hint=hint
            ) from exc
        except ssl.SSLError as exc:
            sock.close()
            raise _tls_failure(exc, step, ep) from exc
        except (imaplib.IMAP4.error, OSError) as exc:
            sock.close()
            raise MailConnectionError(
                "the server did not greet as an IMAP server",
                step=step,
                server_reply=_text(exc),
                hint="This port does not answer like an IMAP server: check the host, the port "
                "(993 or 143) and the TLS mode.",
            ) from exc

    def _starttls(self) -> None:
        imap = self._require()
        ep = self.endpoint
        if "STARTTLS" not in imap.capabilities:
            raise TlsError(
                "the server does not offer STARTTLS",
                step="tls",
                hint="The server offers no STARTTLS on this port, so the password was not sent. "
                "Use implicit TLS (usually port 993).",
            )
        try:
            ctx = tls_context(ep.ca_bundle_pem)
            imap.starttls(ctx)
        except (ssl.SSLError, TimeoutError, ValueError) as exc:
            raise _tls_failure(exc, "tls", ep) from exc
        except imaplib.IMAP4.abort as exc:
            raise _tls_failure(exc, "tls", ep) from exc
        except imaplib.IMAP4.error as exc:
            raise TlsError(
                "the server refused STARTTLS",
                step="tls",
                server_reply=_text(exc),
                hint="The server refused to start TLS. Use implicit TLS (usually port 993).",
            ) from exc

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
        """Authenticate: AUTHENTICATE PLAIN when offered (UTF-8 safe), LOGIN otherwise."""
        ep = self.endpoint
        with self._step("login", ep.username):
            imap = self._require()
            if ep.tls_mode == "none" and not ep.allow_plaintext_password:
                raise TlsError(
                    "refusing to send the password without TLS",
                    step="login",
                    hint="TLS is disabled for this account, so the password would cross the "
                    "network in clear text. Choose STARTTLS or implicit TLS.",
                )
            if "LOGINDISABLED" in self.capabilities:
                raise TlsError(
                    "the server does not accept a password on this connection",
                    step="login",
                    hint="The server only accepts passwords over TLS: choose STARTTLS or "
                    "implicit TLS.",
                )
            user = ep.username
            password = ep.password.get_secret_value()
            try:
                if "AUTH=PLAIN" in self.capabilities:
                    token = b"\0" + user.encode() + b"\0" + password.encode()
                    imap.authenticate("PLAIN", lambda _challenge: token)
                elif user.isascii() and password.isascii():
                    imap.login(user, password)
                else:
                    raise AuthError(
                        "the server cannot take a non-ASCII user name or password",
                        step="login",
                        hint="The server offers only LOGIN, which carries ASCII only: use a "
                        "password made of ASCII characters.",
                    )
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                raise self._login_refused(_text(exc)) from None
            # The capabilities change once logged in (SPECIAL-USE, LIST-EXTENDED...).
            self._refresh_capabilities()

    def _login_refused(self, reply: str) -> TransportError:
        code = _code(reply)
        if code == "PRIVACYREQUIRED":
            return TlsError(
                "the server requires TLS before the password",
                step="login",
                server_reply=reply,
                hint="The server only accepts passwords over TLS: choose STARTTLS or implicit TLS.",
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
            hint = _login_hint(reply, self.endpoint)
        return AuthError(
            "the server refused the login", step="login", server_reply=reply, hint=hint
        )

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
            raise ReplyError(
                "the server refused to list folders",
                kind="permanent",
                step="find_sent",
                server_reply=_text(data[-1] if data else ""),
                hint="The server would not list the account's folders.",
            )
        return parse_list_response(data)

    def find_sent(self) -> Folder:
        """The Sent folder: the account's setting, else SPECIAL-USE ``\\Sent``, else a name."""
        ep = self.endpoint
        with self._step("find_sent") as record:
            self.folders = self.list_folders()
            if ep.sent_folder:
                found = match_folder(self.folders, ep.sent_folder)
                if found is None:
                    raise TransportError(
                        f"no folder named {ep.sent_folder!r}",
                        step="find_sent",
                        hint=f"The account names {ep.sent_folder!r} as its Sent folder but the "
                        f"server has no such folder. Folders found: {self._folder_names()}.",
                    )
                record.detail = f"{found.name} (account setting)"
                return found
            found = choose_sent_folder(self.folders)
            if found is None:
                raise TransportError(
                    "no Sent folder found",
                    step="find_sent",
                    hint="No folder is marked as Sent and none has a usual Sent name. Enter the "
                    f"Sent folder's name in the account's settings. Folders found: "
                    f"{self._folder_names()}.",
                )
            how = "SPECIAL-USE \\Sent" if found.is_sent else "by name"
            record.detail = f"{found.name} ({how})"
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
            reply = _text(data[-1] if data else "")
            if typ != "OK":
                raise self._append_refused(reply, folder)
            match = re.search(r"\[APPENDUID \d+ (\d+)\]", reply, re.IGNORECASE)
            return int(match.group(1)) if match else None

    def _append_refused(self, reply: str, folder: Folder) -> ReplyError:
        code = _code(reply)
        kind, hint = "permanent", "The server refused to store the copy; see its reply."
        if code == "TRYCREATE":
            hint = f"The folder {folder.name!r} does not exist on the server."
        elif code == "OVERQUOTA":
            kind, hint = "quota", "The mailbox is full: delete old mail or raise its quota."
        elif code == "LIMIT" or "too large" in reply.lower():
            hint = "The message is larger than the server accepts in a folder."
        elif code in ("UNAVAILABLE", "INUSE", "SERVERBUG"):
            kind, hint = "transient", "The server could not store the copy now."
        return ReplyError(
            f"the server refused the copy in {folder.name!r}",
            kind=kind,
            step="append",
            server_reply=reply,
            hint=hint,
        )

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
