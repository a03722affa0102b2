"""Read-only IMAP reading of one mailbox over a logged-in :class:`ImapSession` (blocking).

Nothing here changes the mailbox: it is opened with EXAMINE, bodies are read with
``BODY.PEEK`` (no ``\\Seen``), and there is no STORE, COPY, MOVE or EXPUNGE.
"""

from __future__ import annotations

import imaplib
import re
import select
import socket
import ssl
import threading
import time
from datetime import date

from sendas.errors import MailConnectionError
from sendas.imap.folders import quote_mailbox

_IDLE_TAG = b"BNCIDLE"
_SLICE = 1.0  # seconds between checks of the stop flag while idling
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class InboxError(MailConnectionError):
    """The server refused a read (EXAMINE, SEARCH, FETCH) or the link broke."""


class Inbox:
    """One mailbox examined on ``imap`` (a logged-in imaplib client)."""

    def __init__(self, imap: imaplib.IMAP4, mailbox: str = "INBOX") -> None:
        self.imap = imap
        self.mailbox = mailbox
        self.uidvalidity = 0

    def examine(self) -> int:
        """Open the mailbox read-only; its UIDVALIDITY."""
        typ, _ = self.imap.select(quote_mailbox(self.mailbox), readonly=True)
        if typ != "OK":
            raise InboxError(f"the server refused to open {self.mailbox}", step="bounces")
        _, found = self.imap.response("UIDVALIDITY")
        value = found[-1] if found else None
        self.uidvalidity = int(value) if isinstance(value, bytes) and value.isdigit() else 0
        self.imap.untagged_responses.pop("EXISTS", None)  # later ones: mail since EXAMINE
        return self.uidvalidity

    def uids_after(self, last_uid: int) -> list[int]:
        """The UIDs above ``last_uid``, ascending (``n:*`` also answers the highest UID when
        none is above, so that one is dropped)."""
        return [u for u in self._search(f"UID {last_uid + 1}:*") if u > last_uid]

    def start_since(self, day: date) -> int:
        """The last UID to skip so that a pass reads the messages received on or after
        ``day`` (by internal date): the one below the first of them, else the highest UID
        (asked first, so a message arriving meanwhile is not skipped); 0 when empty."""
        highest = max(self._search("UID *"), default=0)
        since = self._search(f"SINCE {day.day}-{_MONTHS[day.month - 1]}-{day.year}")
        return min(since) - 1 if since else highest

    def _search(self, criteria: str) -> list[int]:
        typ, data = self.imap.uid("SEARCH", criteria)
        if typ != "OK":
            raise InboxError("the server refused to search the mailbox", step="bounces")
        words = data[0].split() if data and isinstance(data[0], bytes) else []
        return sorted(int(w) for w in words if w.isdigit())

    def fetch(self, uid: int, max_bytes: int) -> bytes | None:
        """The first ``max_bytes`` of message ``uid`` (None: it is gone)."""
        typ, data = self.imap.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{max_bytes}>)")
        if typ != "OK":
            raise InboxError("the server refused to fetch a message", step="bounces")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        return None

    def idle(self, seconds: float, stop: threading.Event) -> bool:
        """RFC 2177 IDLE for up to ``seconds``: True when the server announced new mail.

        imaplib (3.11) has no IDLE, so the exchange is read straight from the socket; a
        notification that imaplib had already buffered only waits for the next round.
        """
        if self.imap.untagged_responses.pop("EXISTS", None):
            return True  # announced during the pass (imaplib kept it): no need to wait
        sock = self.imap.socket()
        self.imap.send(_IDLE_TAG + b" IDLE\r\n")
        reader = _Lines(sock)
        first = reader.line(self.imap_timeout)
        if not first.startswith(b"+"):
            raise InboxError("the server refused IDLE", step="bounces")
        news = False
        deadline = time.monotonic() + seconds
        while not news and not stop.is_set() and time.monotonic() < deadline:
            line = reader.line(min(_SLICE, max(deadline - time.monotonic(), 0.01)), quiet=True)
            news = bool(re.match(rb"\* \d+ (EXISTS|RECENT)", line))
        self.imap.send(b"DONE\r\n")
        while True:
            line = reader.line(self.imap_timeout)
            if line.startswith(_IDLE_TAG):
                return news
            news = news or bool(re.match(rb"\* \d+ EXISTS", line))

    @property
    def imap_timeout(self) -> float:
        sock = self.imap.socket()
        return sock.gettimeout() or 30.0


class _Lines:
    """CRLF lines read from a socket with select (a timed-out socket file cannot be read
    again, so imaplib's reader is not used while idling)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self, timeout: float, *, quiet: bool = False) -> bytes:
        """The next line; ``b""`` after ``timeout`` when ``quiet``, else InboxError."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
            if not pending:
                ready, _, _ = select.select([self.sock], [], [], max(left, 0))
                if not ready:
                    if quiet:
                        return b""
                    raise InboxError("the server did not answer IDLE in time", step="bounces")
            try:
                chunk = self.sock.recv(65536)
            except ssl.SSLWantReadError:
                continue
            if not chunk:
                raise InboxError("the server closed the connection", step="bounces")
            self.buf += chunk
            if len(self.buf) > 1_000_000:
                raise InboxError("the server sent an overlong line", step="bounces")
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")
