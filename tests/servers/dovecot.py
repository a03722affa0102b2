"""A private Dovecot IMAP server for the test session.

``dovecot_server`` (session) starts the system's ``dovecot`` binary in the foreground with a
configuration written to a temporary directory: it listens on 127.0.0.1 only, on ports chosen
at run time, with IMAP + STARTTLS and implicit-TLS IMAPS listeners whose certificate comes from
a CA made at test time (trustme). Mail is stored as maildir in the same directory. The server
stops at the end of the session.

Accounts (``DovecotServer.accounts``):

* ``special`` — one namespace, separator ``/``; its Sent folder ``Sent Items`` carries the
  RFC 6154 SPECIAL-USE attribute ``\\Sent``.
* ``plain`` — maildir++ style: one namespace with prefix ``INBOX.`` and separator ``.``, no
  SPECIAL-USE anywhere; its Sent folder is ``INBOX.Sent``.

``DovecotServer.add_account()`` adds a fresh empty account at any time (Dovecot re-reads the
passwd-file when it changes), for tests that create their own folders. ``read_mailbox()``
reads a mailbox back (raw bytes + flags) over IMAP with the stdlib ``imaplib``.

``dovecot_oauth`` (function scope) is a factory: ``dovecot_oauth(oauth_server)`` starts another
private Dovecot that also accepts XOAUTH2 and OAUTHBEARER through its ``oauth2`` passdb, which
asks that test authorization server's RFC 7662 introspection endpoint whether the token is
active and for whom (``email`` must equal the user name the client gives). The password passdb
stays next to it. ``dovecot_oauth(oauth_server, "a@example.test", ...)`` creates those users'
mailboxes, laid out as ``special`` (``Sent Items`` with SPECIAL-USE ``\\Sent``);
``DovecotServer.mailbox_of(email)`` gives such an account (its password is for reading
mailboxes back in tests; sendas signs in with a token).

Dovecot also offers an authentication socket (``auth_socket``) that Postfix uses for SMTP AUTH
(``smtpd_sasl_type = dovecot``); see ``tests/servers/postfix.py``.

Dovecot's master must start as root to drop privileges; mail is owned by the ``dovecot`` OS
user. Without root the tests that need it skip (fail under ``CI=true``).
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from tests.servers.need import missing, need_binary
from tests.servers.oauth_server import OAuthTestServer
from tests.servers.process import free_port, stop_process_group, tail

HOST = "127.0.0.1"
# Both passwords have a space and punctuation, so quoting bugs in clients show up.
SPECIAL_PASSWORD = "special pass 1!"
PLAIN_PASSWORD = "plain pass 2?"
OAUTH_USER_PASSWORD = "oauth user pass 3."


@dataclass(frozen=True)
class DovecotAccount:
    """A test mailbox: credentials and the Sent folder a client should find."""

    username: str
    password: str
    sent_folder: str | None
    special_use: bool
    separator: str


@dataclass(frozen=True)
class Message:
    """One message read back from a mailbox."""

    uid: int
    raw: bytes
    flags: frozenset[str]
    internal_date: str  # as the server shows it, e.g. "05-Mar-2024 10:11:12 +0100"


@dataclass
class DovecotServer:
    """What the ``dovecot_server`` fixture returns."""

    host: str
    imap_port: int
    imaps_port: int
    ca: trustme.CA = field(repr=False)
    root: Path
    auth_socket: Path
    accounts: dict[str, DovecotAccount]
    passwd_file: Path = field(repr=False)
    log_file: Path = field(repr=False)
    _pool: dict[str, list[tuple[str, str]]] = field(default_factory=dict, repr=False)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ca_pem(self) -> str:
        """PEM of the CA that signed the server certificate (trust this to connect)."""
        return self.ca.cert_pem.bytes().decode()

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def mailbox_of(self, email: str) -> DovecotAccount:
        """The account of a user made for ``dovecot_oauth`` (layout ``special``)."""
        return DovecotAccount(email, OAUTH_USER_PASSWORD, "Sent Items", True, "/")

    @property
    def special(self) -> DovecotAccount:
        return self.accounts["special"]

    @property
    def plain(self) -> DovecotAccount:
        return self.accounts["plain"]

    def add_account(self, prefix: str = "user", *, layout: str = "slash") -> DovecotAccount:
        """A new empty account, used by one test only.

        ``layout``: ``slash`` (the default) = separator ``/``, only INBOX, no SPECIAL-USE, for
        tests that create their own folders; ``plain`` and ``special`` as the built-in accounts.
        """
        sent = {"slash": None, "plain": "INBOX.Sent", "special": "Sent Items"}[layout]
        sep = "." if layout == "plain" else "/"
        with self._lock:
            pool = self._pool.get(layout)
            if pool:
                username, password = pool.pop()
            else:
                n = next(self._counter)
                username = f"{prefix}{n}@example.test"
                password = f"pw {n} {prefix}!"
                with self.passwd_file.open("a") as fh:
                    fh.write(_passwd_line(username, password, layout))
                # Dovecot stats the passwd-file at most once a second: let the change show.
                time.sleep(1.1)
        return DovecotAccount(username, password, sent, layout == "special", sep)

    def connect(self, account: DovecotAccount) -> imaplib.IMAP4_SSL:
        """A logged-in imaplib client (implicit TLS), for test set-up and read-back."""
        imap = imaplib.IMAP4_SSL(
            self.host, self.imaps_port, ssl_context=self.ssl_context(), timeout=10
        )
        imap.login(account.username, account.password)
        return imap

    def create_folder(self, account: DovecotAccount, name: str) -> None:
        """Create a folder; ``name`` is the raw (modified UTF-7) IMAP name."""
        with contextlib.closing(_Closing(self.connect(account))) as c:
            typ, data = c.imap.create(_quote(name))
            assert typ == "OK", data

    def list_folders(self, account: DovecotAccount) -> list[bytes]:
        with contextlib.closing(_Closing(self.connect(account))) as c:
            typ, data = c.imap.list()
            assert typ == "OK", data
            return [d if isinstance(d, bytes) else b" ".join(d) for d in data if d]

    def read_mailbox(self, account: DovecotAccount, mailbox: str) -> list[Message]:
        """Every message in ``mailbox`` (raw IMAP name) with its flags, oldest first."""
        with contextlib.closing(_Closing(self.connect(account))) as c:
            imap = c.imap
            typ, data = imap.select(_quote(mailbox), readonly=True)
            assert typ == "OK", data
            typ, data = imap.uid("SEARCH", "ALL")
            assert typ == "OK", data
            uids = [int(u) for u in data[0].split()] if data and data[0] else []
            messages = []
            for uid in uids:
                typ, data = imap.uid("FETCH", str(uid), "(FLAGS INTERNALDATE BODY.PEEK[])")
                assert typ == "OK", data
                parts: list[object] = list(data)
                head, raw = next(d for d in parts if isinstance(d, tuple))
                assert isinstance(head, bytes) and isinstance(raw, bytes)
                flags = re.search(rb"FLAGS \(([^)]*)\)", head)
                flag_set = frozenset(flags.group(1).decode().split()) if flags else frozenset()
                date = re.search(rb'INTERNALDATE "([^"]*)"', head)
                messages.append(Message(uid, raw, flag_set, date.group(1).decode() if date else ""))
            return messages

    def log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class _Closing:
    def __init__(self, imap: imaplib.IMAP4) -> None:
        self.imap = imap

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.imap.logout()


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _passwd_line(username: str, password: str, layout: str) -> str:
    """A passwd-file line. Userdb extra fields pick this user's namespace layout."""
    enabled = {"special": "su", "plain": "dot", "slash": "slash"}[layout]
    extra = " ".join(
        f"userdb_namespace/{ns}/disabled={'no' if ns == enabled else 'yes'}"
        for ns in ("su", "dot", "slash")
    )
    if ":" in username + password or "\n" in username + password:
        raise ValueError("':' and newlines cannot appear in a passwd-file entry")
    return f"{username}:{{PLAIN}}{password}::::::{extra}\n"


CONFIG = """\
# Private test instance: nothing here touches the system's Dovecot.
instance_name = sendas-test-{pid}
base_dir = {run}
state_dir = {state}
protocols = imap
listen = 127.0.0.1
log_path = {log}
info_log_path = {log}
auth_verbose = yes
# Wrong-password tests need no 2 s penalty.
auth_failure_delay = 0
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = {mechanisms}
default_login_user = {login_user}
default_internal_user = {internal_user}
mail_uid = {mail_uid}
mail_gid = {mail_gid}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{mail}/%u/Maildir
mail_home = {mail}/%u
mailbox_list_index = no
{oauth_passdb}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service auth {{
  # Postfix's smtpd authenticates SMTP clients here (smtpd_sasl_type = dovecot).
  unix_listener {auth_socket} {{
    mode = 0666
  }}
}}
service anvil {{
  # No growing delay after failed logins from 127.0.0.1 (Dovecot's auth penalty).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

# Layout "special": one namespace, '/' separator, Sent folder with SPECIAL-USE \\Sent.
namespace su {{
  inbox = yes
  separator = /
  prefix =
  mailbox "Sent Items" {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
}}
# Layout "plain": maildir++ / Courier style, INBOX. prefix, '.' separator, no SPECIAL-USE.
namespace dot {{
  inbox = yes
  separator = .
  prefix = INBOX.
  disabled = yes
  mailbox Sent {{
    auto = subscribe
  }}
  mailbox Trash {{
    auto = subscribe
  }}
}}
# Layout "slash": '/' separator, only INBOX, no SPECIAL-USE: tests create their own folders.
namespace slash {{
  inbox = yes
  separator = /
  prefix =
  disabled = yes
}}
"""


# The oauth2 passdb (Dovecot 2.3): tokens of XOAUTH2 / OAUTHBEARER are checked by POSTing them
# to the authorization server's RFC 7662 endpoint (credentials in the URL); the answer must
# say active = true and carry the client's user name as "email".
OAUTH_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {conf}
}}
"""
OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = email
active_attribute = active
active_value = true
timeout_msecs = 10000
"""


class PrivateDovecot:
    """``dovecot -F -c <tmp>/dovecot.conf``, stopped with SIGTERM at the end.

    With ``introspection_url`` it also accepts XOAUTH2 / OAUTHBEARER (see the module
    docstring); ``oauth_users`` get mailboxes (layout ``special``).
    """

    def __init__(
        self,
        binary: str,
        *,
        introspection_url: str | None = None,
        oauth_users: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.introspection_url = introspection_url
        self.oauth_users = oauth_users
        # Not pytest's tmp_path: its parents are 0700 root, which the mail user and Postfix's
        # smtpd (for the auth socket) cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="sendas-dovecot-"))
        self.root.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DovecotServer:
        if os.geteuid() != 0:
            # Dovecot can run unprivileged, but with a different set-up this suite has not
            # needed so far.
            missing("root privileges to run a private Dovecot")
        root = self.root
        run, state, mail = root / "run", root / "state", root / "mail"
        for d in (run, state, mail):
            d.mkdir()
        log = root / "dovecot.log"
        passwd = root / "passwd"
        auth_socket = root / "auth-postfix"

        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        cert_file, key_file = root / "server.crt", root / "server.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        for extra in cert.cert_chain_pems[1:]:
            with cert_file.open("ab") as fh:
                fh.write(extra.bytes())
        cert.private_key_pem.write_to_path(str(key_file))
        key_file.chmod(0o600)

        # Accounts handed out by add_account(), registered up front: Dovecot notices a changed
        # passwd-file only once a second.
        pool: dict[str, list[tuple[str, str]]] = {
            layout: [(f"{layout}-{n}@example.test", f"pw {n} {layout}!") for n in range(size)]
            for layout, size in (("slash", 40), ("special", 10), ("plain", 10))
        }
        passwd.write_text(
            "".join(_passwd_line(u, OAUTH_USER_PASSWORD, "special") for u in self.oauth_users)
            + _passwd_line("special@example.test", SPECIAL_PASSWORD, "special")
            + _passwd_line("plain@example.test", PLAIN_PASSWORD, "plain")
            + "".join(
                _passwd_line(user, password, layout)
                for layout, entries in pool.items()
                for user, password in entries
            )
        )
        passwd.chmod(0o644)

        try:
            mail_user = pwd.getpwnam("dovecot")
            pwd.getpwnam("dovenull")
        except KeyError:
            missing("the 'dovecot' and 'dovenull' OS users (from dovecot-core)")
        os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
        names = {
            "login_user": "dovenull",
            "internal_user": "dovecot",
            "mail_uid": mail_user.pw_name,
            "mail_gid": grp.getgrgid(mail_user.pw_gid).gr_name,
        }

        mechanisms, oauth_passdb = "plain login", ""
        if self.introspection_url is not None:
            oauth_conf = root / "dovecot-oauth2.conf.ext"
            oauth_conf.write_text(OAUTH2_CONF.format(url=self.introspection_url))
            oauth_conf.chmod(0o644)
            mechanisms = "plain login xoauth2 oauthbearer"
            oauth_passdb = OAUTH_PASSDB.format(conf=oauth_conf)

        conf = root / "dovecot.conf"
        last_error = ""
        # A port picked here may be taken before Dovecot binds it; try a few.
        for _attempt in range(5):
            imap_port, imaps_port = free_port(), free_port()
            if imap_port == imaps_port:
                continue
            conf.write_text(
                CONFIG.format(
                    pid=os.getpid(),
                    run=run,
                    state=state,
                    log=log,
                    cert=cert_file,
                    key=key_file,
                    mail=mail,
                    passwd=passwd,
                    auth_socket=auth_socket,
                    imap_port=imap_port,
                    imaps_port=imaps_port,
                    mechanisms=mechanisms,
                    oauth_passdb=oauth_passdb,
                    **names,
                )
            )
            self.process = subprocess.Popen(
                [self.binary, "-F", "-c", str(conf)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=root,
                start_new_session=True,
            )
            if self._wait_ready(imap_port, imaps_port):
                break
            last_error = self._output() + "\n" + tail(log)
            self.stop_process()
            if "Address already in use" not in last_error:
                raise RuntimeError(f"Dovecot did not start:\n{last_error}")
        else:
            raise RuntimeError(f"Dovecot found no free ports:\n{last_error}")

        return DovecotServer(
            host=HOST,
            imap_port=imap_port,
            imaps_port=imaps_port,
            ca=ca,
            root=root,
            auth_socket=auth_socket,
            accounts={
                "special": DovecotAccount(
                    "special@example.test", SPECIAL_PASSWORD, "Sent Items", True, "/"
                ),
                "plain": DovecotAccount(
                    "plain@example.test", PLAIN_PASSWORD, "INBOX.Sent", False, "."
                ),
            },
            passwd_file=passwd,
            log_file=log,
            _pool={layout: entries[::-1] for layout, entries in pool.items()},
        )

    def _wait_ready(self, *ports: int, timeout: float = 20) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        waiting = list(ports)
        while waiting and time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, waiting[0]), timeout=1):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        return not waiting

    def _output(self) -> str:
        if self.process is None or self.process.stdout is None:
            return ""
        if self.process.poll() is None:
            return ""
        return self.process.stdout.read().decode(errors="replace")

    def stop_process(self) -> None:
        proc = self.process
        if proc is None:
            return
        # SIGTERM makes the master stop its children and exit.
        stop_process_group(proc, lambda: proc.send_signal(signal.SIGTERM))
        self.process = None

    def stop(self) -> None:
        try:
            self.stop_process()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    """A running private Dovecot (see the module docstring)."""
    binary = need_binary("dovecot", "/usr/sbin/dovecot")
    server = PrivateDovecot(binary)
    try:
        yield server.start()
    finally:
        server.stop()


DovecotOAuthFactory = Callable[..., DovecotServer]


@pytest.fixture
def dovecot_oauth() -> Iterator[DovecotOAuthFactory]:
    """Factory: ``dovecot_oauth(oauth_server, *emails)`` starts a private Dovecot that also
    accepts that test authorization server's access tokens (XOAUTH2, OAUTHBEARER), with
    mailboxes for ``emails``; stopped after the test."""
    binary = need_binary("dovecot", "/usr/sbin/dovecot")
    started: list[PrivateDovecot] = []

    def start(oauth_server: OAuthTestServer, *emails: str) -> DovecotServer:
        server = PrivateDovecot(
            binary, introspection_url=oauth_server.introspection_url, oauth_users=emails
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
