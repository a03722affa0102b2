"""Looking a sent message up in a folder by its Message-ID (``UID SEARCH HEADER``).

Used to settle a message whose fate is unknown (is it in Sent?) and to learn whether a
server files its own copy of accepted mail. Runs on a logged-in
:class:`~sendas.imap.session.ImapSession`, in its worker thread; opens the folder read-only
(EXAMINE), so nothing is ever marked, moved or deleted.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sendas.errors import MailConnectionError, MailTimeoutError, ReplyError, TransportError
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.folders import Folder, quote_mailbox, wire_name
from sendas.imap.replies import reply_text
from sendas.imap.session import ImapSession

STEP = "search"

_HEADER_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]{1,900}>)", re.IGNORECASE | re.MULTILINE)
# Characters a Message-ID may not bring into an IMAP command (it is sent as a quoted string).
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')


def message_id_of(raw: bytes) -> str | None:
    """The ``<...>`` Message-ID in the header of ``raw``, or None."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = _HEADER_ID.search(head)
    return found.group(1).decode("ascii", "replace") if found else None


def searchable(message_id: str) -> bool:
    """Whether ``message_id`` can be searched for (ASCII, no quote or control character)."""
    return bool(message_id) and message_id.isascii() and not _UNSAFE.search(message_id)


def _failure(exc: OSError | imaplib.IMAP4.error, what: str) -> TransportError:
    if isinstance(exc, TimeoutError):
        return MailTimeoutError(f"the server did not answer in time during {what}", step=STEP)
    if isinstance(exc, OSError | imaplib.IMAP4.abort):
        return MailConnectionError(
            f"the connection broke during {what}", step=STEP, server_reply=reply_text(exc)
        )
    return ReplyError(
        f"the server refused {what}", kind="permanent", step=STEP, server_reply=reply_text(exc)
    )


def examine(session: ImapSession, folder: Folder) -> None:
    """Open ``folder`` read-only. Raises a TransportError (step ``search``) when refused."""
    imap = session.imap
    if imap is None:
        raise RuntimeError("not connected")
    try:
        typ, data = imap.select(quote_mailbox(folder.raw or wire_name(folder.name)), readonly=True)
    except (OSError, imaplib.IMAP4.error) as exc:
        session.broken = session.broken or not isinstance(exc, imaplib.IMAP4.error)
        raise _failure(exc, f"opening {folder.name}") from exc
    if typ != "OK":
        reply = reply_text(data[-1] if data else "")
        raise ReplyError(
            f"the server refused to open {folder.name}",
            kind="permanent",
            step=STEP,
            server_reply=reply,
        )


def _search_one(imap: imaplib.IMAP4, message_id: str) -> list[int]:
    typ, data = imap.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
    if typ != "OK":
        raise imaplib.IMAP4.error(reply_text(data[-1] if data else ""))
    found: list[int] = []
    for line in data:
        if isinstance(line, bytes):
            found.extend(int(u) for u in line.split() if u.isdigit())
    return found


def find_by_message_ids(
    session: ImapSession, folder: Folder, message_ids: Iterable[str]
) -> dict[str, list[int]]:
    """UIDs in ``folder`` of each Message-ID (``<id@host>``, angle brackets included), one
    ``UID SEARCH HEADER Message-ID`` each over one EXAMINE. An id that cannot be sent in a
    command (a quote, a control character) is answered with no UIDs.

    Raises a TransportError (step ``search``) when the folder or a search is refused or the
    link breaks.
    """
    examine(session, folder)
    imap = session.imap
    assert imap is not None
    found: dict[str, list[int]] = {}
    for message_id in message_ids:
        if not searchable(message_id):
            found[message_id] = []
            continue
        try:
            found[message_id] = _search_one(imap, message_id)
        except (OSError, imaplib.IMAP4.error) as exc:
            session.broken = session.broken or not isinstance(exc, imaplib.IMAP4.error)
            raise _failure(exc, f"searching {folder.name}") from exc
    return found


def find_by_message_id(session: ImapSession, folder: Folder, message_id: str) -> list[int]:
    """UIDs in ``folder`` of the message with ``message_id`` (see :func:`find_by_message_ids`)."""
    return find_by_message_ids(session, folder, [message_id])[message_id]


@dataclass(frozen=True)
class SentLookup:
    """Which of the Message-IDs asked for are in the account's Sent folder (``folder``)."""

    folder: str
    found: frozenset[str]
    searched: frozenset[str]
    """The Message-IDs actually searched for (one that cannot go into a command is not)."""


def _look_up_blocking(
    endpoint: ImapEndpoint, message_ids: Sequence[str], loop: asyncio.AbstractEventLoop
) -> SentLookup:
    session = ImapSession(endpoint, loop=loop)
    try:
        session.connect()
        session.login()
        folder = session.find_sent()
        uids = find_by_message_ids(session, folder, message_ids)
        found = frozenset(m for m, u in uids.items() if u)
        return SentLookup(folder.name, found, frozenset(filter(searchable, message_ids)))
    finally:
        session.close()


async def look_up_in_sent(endpoint: ImapEndpoint, message_ids: Sequence[str]) -> SentLookup:
    """Log in once, find the Sent folder and search it for each of ``message_ids``.

    Raises a :class:`~sendas.errors.TransportError` subclass naming the failed step (login
    refused, no Sent folder, search refused...); with XOAUTH2, ReauthRequired when the
    grant is gone.
    """
    loop = asyncio.get_running_loop()
    return await asyncio.to_thread(_look_up_blocking, endpoint, list(message_ids), loop)
