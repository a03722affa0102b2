"""Private Postfix instances for the tests: one helper (:class:`PrivatePostfix`), two roles.

``postfix_server`` (session) runs the system's Postfix with its own ``config_directory``,
``queue_directory`` and ``data_directory`` in a temporary directory (``postfix -c DIR
start-fg``, so the master process is a child of the test run). One ``smtpd`` listens on
127.0.0.1 on a port chosen at run time:

* STARTTLS with a certificate signed by the Dovecot fixture's test CA (``ca_pem``);
* SMTP AUTH (PLAIN, LOGIN) only after STARTTLS (``smtpd_tls_auth_only = yes``), checked by the
  private Dovecot through its auth socket (``smtpd_sasl_type = dovecot``);
* relaying only for authenticated clients, and only from the address the account owns
  (``reject_sender_login_mismatch``: any other ``MAIL FROM`` gets ``553 5.7.1``);
* every accepted message, whatever its recipients, is delivered by Postfix's ``virtual``
  agent into one maildir that ``received()`` reads.

``relay_postfix()`` + ``start_relay()`` (per test, tests/bounces) run the same helper as a
plain-text relay to one SMTP server (a test's aiosmtpd), open to 127.0.0.1: a recipient
that server refuses with 550 makes Postfix write its own DSN, relayed to the same server.

Postfix must run as root (its master drops privileges per service); otherwise the tests that
need it skip (fail under ``CI=true``).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.dovecot import DovecotServer, free_port
from tests.servers.need import missing, need_binary
from tests.servers.process import stop_process_group, tail

HOST = "127.0.0.1"


@dataclass
class PostfixServer:
    """What the ``postfix_server`` fixture returns."""

    host: str
    port: int
    ca_pem: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    from_address: str
    maildir: Path = field(repr=False)
    log_file: Path = field(repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.load_verify_locations(cadata=self.ca_pem)
        return ctx

    def received(self) -> list[bytes]:
        """Every message Postfix has delivered so far, raw, oldest first.

        Postfix's ``virtual`` agent prepends ``Return-Path``, ``Delivered-To`` and ``Received``
        header lines to the message as submitted, and stores it with LF line ends.
        """
        files: list[Path] = []
        for sub in ("new", "cur"):
            folder = self.maildir / sub
            if folder.is_dir():
                files.extend(p for p in folder.iterdir() if p.is_file())
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in files]

    def wait_for(self, predicate: Callable[[bytes], bool], *, timeout: float = 15.0) -> list[bytes]:
        """The delivered messages matching ``predicate``, waiting up to ``timeout`` seconds
        for at least one (Postfix delivers asynchronously, usually within a second)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.received() if predicate(m)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


COMMON_CF = """\
# Private test instance: nothing here touches the system's Postfix.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {root}
maillog_file = {log}
myhostname = {hostname}
mydomain = {hostname}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
biff = no
alias_maps =
alias_database =
smtp_host_lookup = native
smtputf8_enable = {smtputf8}
# Deliver what the client submitted: no added From/Date/Message-ID, no address rewriting.
local_header_rewrite_clients =
smtpd_banner = $myhostname ESMTP {banner}
smtpd_recipient_restrictions =
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_error_sleep_time = 0
"""

SUBMISSION_CF = """\
# Submission: STARTTLS, AUTH only under TLS, checked by the private Dovecot.
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {auth_socket}
smtpd_sasl_security_options = noanonymous
broken_sasl_auth_clients = no

# Relay for authenticated clients only, and only from the address the login owns.
smtpd_sender_login_maps = inline:{{ {from_address}={username} }}
smtpd_sender_restrictions = reject_sender_login_mismatch
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000

# Every accepted message lands in one maildir, whatever its recipients.
default_transport = virtual
relay_transport = virtual
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:sink/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
virtual_mailbox_limit = 0
message_size_limit = 52428800
"""

RELAY_CF = """\
# Plain text both ways; relaying for 127.0.0.1 without authentication.
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
# Everything, the bounces Postfix writes included, goes to the test's server.
relayhost = [{relay_host}]:{relay_port}
default_transport = smtp
relay_transport = smtp
"""

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{host}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       1       1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _require_privileges() -> None:
    """Skip (fail under ``CI=true``) where a private Postfix cannot run."""
    if os.geteuid() != 0:
        missing("root privileges to run a private Postfix")
    for name in ("postfix", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            missing(f"the '{name}' OS user")
    try:
        grp.getgrnam("postdrop")
    except KeyError:
        missing("the 'postdrop' OS group (from postfix)")


class PrivatePostfix:
    """``postfix -c DIR start-fg`` in the background with :data:`COMMON_CF` plus a role's own
    lines (:data:`SUBMISSION_CF`, :data:`RELAY_CF`); :meth:`stop` runs ``postfix -c DIR stop``
    and removes its directory."""

    def __init__(self, binary: str, *, hostname: str, banner: str, smtputf8: bool = True) -> None:
        _require_privileges()
        self.binary = binary
        self.hostname = hostname
        self.banner = banner
        self.smtputf8 = smtputf8
        # Not pytest's tmp_path: Postfix's unprivileged daemons must reach the queue and maildir.
        self.root = Path(tempfile.mkdtemp(prefix=f"{hostname.split('.')[0]}-"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"
        self.config.mkdir()
        self.log = self.root / "postfix.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def _postfix(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )

    def start(self, role_cf: str) -> int:
        """Start it with ``role_cf`` (already filled in) after the common main.cf lines; the
        port its smtpd listens on."""
        queue, data = self.root / "queue", self.root / "data"
        queue.mkdir()
        data.mkdir()
        os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
        common = COMMON_CF.format(
            root=self.root, queue=queue, data=data, log=self.log, hostname=self.hostname,
            banner=self.banner, smtputf8="yes" if self.smtputf8 else "no",
        )  # fmt: skip
        (self.config / "main.cf").write_text(common + "\n" + role_cf)

        last_error = ""
        # A port picked here may be taken before smtpd binds it; try a few.
        for _attempt in range(5):
            port = free_port()
            (self.config / "master.cf").write_text(MASTER_CF.format(host=HOST, port=port))
            check = self._postfix("check")
            if check.returncode != 0:
                raise RuntimeError(f"postfix check failed:\n{check.stdout}{check.stderr}")
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config), "start-fg"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
            if self._wait_ready(port):
                self.port = port
                return port
            last_error = self._output() + "\n" + tail(self.log)
            self.stop_process()
            if "in use" not in last_error:
                raise RuntimeError(f"Postfix did not start:\n{last_error}")
        raise RuntimeError(f"Postfix found no free port:\n{last_error}")

    def _wait_ready(self, port: int, timeout: float = 30) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, port), timeout=2) as sock:
                    if sock.recv(4).startswith(b"220"):
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def _output(self) -> str:
        if self.process is None or self.process.stdout is None or self.process.poll() is None:
            return ""
        return self.process.stdout.read().decode(errors="replace")

    def log_tail(self) -> str:
        return tail(self.log)

    def stop_process(self) -> None:
        proc = self.process
        if proc is None:
            return
        stop_process_group(proc, lambda: self._postfix("stop", timeout=30))
        self.process = None

    def stop(self) -> None:
        try:
            self.stop_process()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_submission(postfix: PrivatePostfix, dovecot: DovecotServer) -> PostfixServer:
    """Start ``postfix`` as the submission server the module docstring describes: TLS with a
    certificate from Dovecot's CA, SASL by Dovecot, delivery into one maildir."""
    nobody = pwd.getpwnam("nobody")
    mail = postfix.root / "mail"
    mail.mkdir()
    os.chown(mail, nobody.pw_uid, nobody.pw_gid)

    cert = dovecot.ca.issue_cert(HOST, "localhost")
    cert_file, key_file = postfix.config / "smtpd.crt", postfix.config / "smtpd.key"
    cert_file.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)

    account = dovecot.add_account("smtp", layout="special")
    role_cf = SUBMISSION_CF.format(
        cert=cert_file, key=key_file, auth_socket=dovecot.auth_socket,
        from_address=account.username, username=account.username,
        mail=mail, uid=nobody.pw_uid, gid=nobody.pw_gid,
    )  # fmt: skip
    port = postfix.start(role_cf)
    return PostfixServer(
        host=HOST,
        port=port,
        ca_pem=dovecot.ca_pem,
        username=account.username,
        password=account.password,
        from_address=account.username,
        maildir=mail / "sink",
        log_file=postfix.log,
    )


def relay_postfix() -> PrivatePostfix:
    """A private Postfix for :func:`start_relay` (not started yet)."""
    binary = need_binary("postfix", "/usr/sbin/postfix")
    # No SMTPUTF8: the next hop (aiosmtpd) need not offer it for the DSN to be relayed.
    return PrivatePostfix(
        binary, hostname="relay-postfix.test", banner="sendas relay test Postfix", smtputf8=False
    )


def start_relay(postfix: PrivatePostfix, relay_port: int) -> int:
    """Start ``postfix`` relaying everything, without authentication from 127.0.0.1, to the
    SMTP server on ``relay_port``; the port it listens on. A recipient that server refuses
    with 550 makes Postfix write its own bounce (DSN) to the envelope sender, relayed to the
    same server."""
    return postfix.start(RELAY_CF.format(relay_host=HOST, relay_port=relay_port))


@pytest.fixture(scope="session")
def postfix_server(dovecot_server: DovecotServer) -> Iterator[PostfixServer]:
    """A running private Postfix submission server (see the module docstring)."""
    binary = need_binary("postfix", "/usr/sbin/postfix")
    server = PrivatePostfix(binary, hostname="sendas-postfix.test", banner="sendas test Postfix")
    try:
        yield start_submission(server, dovecot_server)
    finally:
        server.stop()
