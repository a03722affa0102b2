"""An SMTP sink that records when each MAIL FROM reached it (for pacing measurements).

    python tests/servers/stamping_sink.py PORT OUTFILE

Tests and bench/run.py start it with :func:`running` and read it with :func:`read_stamps`.

Appends one line per transaction to OUTFILE: ``<epoch seconds> <sender>``. The time is the
kernel's receive timestamp of the packet that carried the command (``SO_TIMESTAMPNS``), so
the gaps are those the server's network stack saw, free of this process's own scheduling
delays (a Python server reads a command up to a few milliseconds late, now and then, which
would show as one gap too short and the next too long). Accepts everything; offers
PIPELINING. One thread per connection; SIGTERM stops it.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
_TIMESPEC = struct.Struct("@ll")
EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"


def kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return time.time()


class Connection:
    def __init__(self, sock: socket.socket, out: IO[str], lock: threading.Lock) -> None:
        self.sock, self.out, self.lock = sock, out, lock
        self.buffer = b""
        self.in_data = False

    def serve(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.sendall(b"220 sink ESMTP\r\n")
        space = socket.CMSG_SPACE(_TIMESPEC.size)
        with self.sock:
            while True:
                data, ancillary, _, _ = self.sock.recvmsg(1 << 16, space)
                if not data:
                    return
                self.buffer += data
                replies, done = self.handle(kernel_time(ancillary))
                if replies:
                    self.sock.sendall(replies)
                if done:
                    return

    def handle(self, stamp: float) -> tuple[bytes, bool]:
        replies: list[bytes] = []
        while True:
            if self.in_data:
                # The data ends with CRLF "." CRLF; the lone "." may open the buffer.
                if self.buffer.startswith(b".\r\n"):
                    end, skip = 0, 3
                else:
                    end, skip = self.buffer.find(b"\r\n.\r\n"), 5
                if end < 0:
                    return b"".join(replies), False
                self.buffer = self.buffer[end + skip :]
                self.in_data = False
                replies.append(b"250 accepted\r\n")
                continue
            line, found, rest = self.buffer.partition(b"\r\n")
            if not found:
                return b"".join(replies), False
            self.buffer = rest
            verb = line[:4].upper()
            if verb == b"MAIL":
                sender = line[10:].split(b">", 1)[0].lstrip(b"<").decode("utf-8", "replace")
                with self.lock:
                    self.out.write(f"{stamp:.6f} {sender}\n")
                replies.append(b"250 ok\r\n")
            elif verb == b"EHLO":
                replies.append(EHLO)
            elif verb == b"DATA":
                self.in_data = True
                replies.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                replies.append(b"221 bye\r\n")
                return b"".join(replies), True
            else:  # HELO, RCPT, RSET, NOOP
                replies.append(b"250 ok\r\n")


def read_stamps(path: Path) -> dict[str, list[float]]:
    """The MAIL FROM times recorded in ``path``, by sender, in order."""
    stamps: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        at, _, sender = line.partition(" ")
        stamps.setdefault(sender, []).append(float(at))
    return {sender: sorted(times) for sender, times in stamps.items()}


@contextlib.contextmanager
def running(path: Path, *, cpus: str | None = None) -> Iterator[int]:
    """Run the sink in a process of its own (its clock reads must not wait for the test's
    event loop); yields its port once it accepts connections. ``cpus`` (``taskset -c``
    syntax) keeps it to those CPUs."""
    # Here: the file also runs as a script.
    from tests.servers.process import child_options, free_port, stop_group

    port = free_port()
    pin = ["taskset", "-c", cpus] if cpus else []
    command = [*pin, sys.executable, __file__, str(port), str(path)]
    proc = subprocess.Popen(command, **child_options())
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the stamping sink did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        stop_group(proc, grace=10)


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lock = threading.Lock()
    with open(path, "a", buffering=1) as out, socket.create_server(("127.0.0.1", port)) as srv:
        while True:
            sock, _ = srv.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=Connection(sock, out, lock).serve, daemon=True).start()


if __name__ == "__main__":
    main()
