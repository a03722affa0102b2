"""A private Postfix that relays everything to one SMTP server (a test's aiosmtpd), with no
authentication for 127.0.0.1: a recipient that server refuses with 550 makes Postfix itself
write the bounce (its own DSN) to the envelope sender, relayed to the same server.

Started per test (the relay's port is the test's); needs root, like tests/servers/postfix.py.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers.need import missing, need_binary
from tests.servers.postfix import MASTER_CF
from tests.servers.process import free_port, stop_process_group, tail

HOST = "127.0.0.1"

MAIN_CF = """\
# Private test instance: nothing here touches the system's Postfix.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {root}
maillog_file = {log}
myhostname = relay-postfix.test
mydomain = relay-postfix.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
biff = no
alias_maps =
alias_database =
smtp_host_lookup = native
smtputf8_enable = no
local_header_rewrite_clients =
smtpd_banner = $myhostname ESMTP sendas relay test Postfix
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions =
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_error_sleep_time = 0
smtp_tls_security_level = none
smtpd_tls_security_level = none
# Everything, the bounces Postfix writes included, goes to the test's server.
relayhost = [{relay_host}]:{relay_port}
default_transport = smtp
relay_transport = smtp
"""


class RelayPostfix:
    """``postfix -c DIR start-fg``; :meth:`stop` stops it and removes its directory."""

    def __init__(self, relay_port: int) -> None:
        self.binary = need_binary("postfix", "/usr/sbin/postfix")
        self.relay_port = relay_port
        self.root = Path(tempfile.mkdtemp(prefix="sendas-relay-postfix-"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def _postfix(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "-c", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout, cwd=self.root,
        )  # fmt: skip

    def start(self) -> int:
        """Start it; the port it listens on."""
        if os.geteuid() != 0:
            missing("root privileges to run a private Postfix")
        queue, data = self.root / "queue", self.root / "data"
        for folder in (self.config, queue, data):
            folder.mkdir()
        os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
        log = self.root / "postfix.log"
        (self.config / "main.cf").write_text(
            MAIN_CF.format(root=self.root, queue=queue, data=data, log=log,
                           relay_host=HOST, relay_port=self.relay_port)
        )  # fmt: skip
        for _attempt in range(5):
            port = free_port()
            (self.config / "master.cf").write_text(MASTER_CF.format(host=HOST, port=port))
            check = self._postfix("check")
            if check.returncode != 0:
                raise RuntimeError(f"postfix check failed:\n{check.stdout}{check.stderr}")
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config), "start-fg"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=self.root, start_new_session=True,
            )  # fmt: skip
            if self._ready(port):
                self.port = port
                return port
            self.stop_process()
            if "in use" not in tail(log):
                raise RuntimeError(f"Postfix did not start:\n{tail(log)}")
        raise RuntimeError("Postfix found no free port")

    def _ready(self, port: int, timeout: float = 30) -> bool:
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

    def log_tail(self) -> str:
        return tail(self.root / "postfix.log")

    def stop_process(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, lambda: self._postfix("stop", timeout=30))
            self.process = None

    def stop(self) -> None:
        try:
            self.stop_process()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
