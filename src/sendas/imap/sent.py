"""Copy a sent message to the account's Sent folder, and Test Connection for IMAP.

The blocking :mod:`sendas.imap.session` runs in a worker thread, one connection per call.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

from sendas.errors import ReauthRequired, TransportError
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.folders import Folder
from sendas.imap.search import find_by_message_id, message_id_of
from sendas.imap.session import ImapSession
from sendas.schemas import ConnectionTestResult

log = logging.getLogger("sendas.imap")

# A copy the outbox does not attempt (the provider files its own) is recorded as "skipped"
# by the outbox itself; an attempt ends in one of these.
AppendStatus = Literal["appended", "failed", "skipped"]

FILED_BY_SERVER = (
    "the mail server filed its own copy in {folder} (found by Message-ID): not copied twice"
)


@dataclass(frozen=True)
class AppendOutcome:
    """What became of the copy to Sent; stored beside the message, never a send failure.

    ``reason`` is a readable detail; on failure ``step``, ``server_reply`` and ``hint`` say
    where and why, as in a failed Test Connection. ``needs_reauth``: the XOAUTH2 login found
    the alias's grant revoked or expired (the alias is flagged; its lane should wait).
    """

    status: AppendStatus
    reason: str = ""
    folder: str | None = None
    uid: int | None = None
    step: str | None = None
    server_reply: str = ""
    hint: str = ""
    needs_reauth: bool = False
    # With ``check_filed``: was a copy with our Message-ID already there before the APPEND
    # (the server files its own copies)? None when not looked at.
    filed_by_server: bool | None = None

    @classmethod
    def from_error(cls, error: TransportError) -> AppendOutcome:
        return cls(
            "failed",
            reason=str(error),
            step=error.step or None,
            server_reply=error.server_reply,
            hint=error.hint,
            needs_reauth=isinstance(error, ReauthRequired),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, without empty fields."""
        data: dict[str, Any] = {"status": self.status, "reason": self.reason}
        for key in ("folder", "uid", "step", "server_reply", "hint"):
            value = getattr(self, key)
            if value not in (None, ""):
                data[key] = value
        return data


def _find_sent_blocking(endpoint: ImapEndpoint, loop: asyncio.AbstractEventLoop) -> str:
    session = ImapSession(endpoint, loop=loop)
    try:
        session.connect()
        session.login()
        return session.find_sent().name
    finally:
        session.close()


async def find_sent_folder(endpoint: ImapEndpoint) -> str:
    """Log in and name the Sent folder (readable form, e.g. ``Envoyés``).

    The account's ``sent_folder`` wins when the server has it; otherwise the folder marked
    SPECIAL-USE ``\\Sent``, otherwise a common or localized Sent name.
    Raises a :class:`~sendas.errors.TransportError` subclass naming the failed step.
    """
    return await asyncio.to_thread(_find_sent_blocking, endpoint, asyncio.get_running_loop())


def _filed_already(session: ImapSession, folder: Folder, raw: bytes) -> bool | None:
    """Is a message with ``raw``'s Message-ID in ``folder`` already? None when it cannot be
    told (no Message-ID, the search refused): the copy is then made as usual."""
    message_id = message_id_of(raw)
    if message_id is None:
        return None
    try:
        return bool(find_by_message_id(session, folder, message_id))
    except TransportError:
        if session.broken:
            raise
        return None


def _append_blocking(
    endpoint: ImapEndpoint, raw: bytes, loop: asyncio.AbstractEventLoop, check_filed: bool
) -> AppendOutcome:
    session = ImapSession(endpoint, loop=loop)
    try:
        session.connect()
        session.login()
        folder = session.find_sent()
        filed = _filed_already(session, folder, raw) if check_filed else None
        if filed:
            reason = FILED_BY_SERVER.format(folder=folder.name)
            return AppendOutcome("skipped", reason=reason, folder=folder.name, filed_by_server=True)
        uid = session.append(folder, raw)
        return AppendOutcome(
            "appended",
            reason=f"copied to {folder.name}",
            folder=folder.name,
            uid=uid,
            filed_by_server=filed,
        )
    finally:
        session.close()


async def append_to_sent(
    endpoint: ImapEndpoint, raw: bytes, *, check_filed: bool = False
) -> AppendOutcome:
    """APPEND ``raw`` (the exact bytes sent, CRLF line ends) to Sent with ``\\Seen``.

    With ``check_filed``, Sent is first searched for ``raw``'s Message-ID: a server that
    filed its own copy gets none from us (status ``skipped``, ``filed_by_server`` True).

    Never raises for a server or network failure: the send already succeeded, so the
    outcome says ``failed`` with the reason, step and hint instead.
    """
    try:
        loop = asyncio.get_running_loop()
        outcome = await asyncio.to_thread(_append_blocking, endpoint, raw, loop, check_filed)
    except TransportError as exc:
        outcome = AppendOutcome.from_error(exc)
    except Exception as exc:  # a copy to Sent must never turn a sent message into an error
        log.exception(
            "copy to Sent failed unexpectedly",
            extra={"imap_host": endpoint.host, "imap_user": endpoint.username},
        )
        outcome = AppendOutcome(
            "failed", reason=f"unexpected error: {exc.__class__.__name__}", step="append"
        )
    log.info(
        "copy to Sent %s",
        outcome.status,
        extra={
            "imap_host": endpoint.host,
            "imap_user": endpoint.username,
            "folder": outcome.folder,
            "step": outcome.step,
            "reason": outcome.reason,
        },
    )
    return outcome


def _probe_blocking(
    endpoint: ImapEndpoint, loop: asyncio.AbstractEventLoop
) -> ConnectionTestResult:
    session = ImapSession(endpoint, loop=loop)
    try:
        session.connect()
        session.login()
        folder = session.find_sent()
    except TransportError as exc:
        return session.recorder.failed(exc).model_copy(update={"tls_found": session.tls_found})
    finally:
        session.close()
    result = session.recorder.passed(sent_folder=folder.name)
    return result.model_copy(update={"tls_found": session.tls_found})


async def probe_imap(endpoint: ImapEndpoint) -> ConnectionTestResult:
    """Test Connection for an IMAP account: connect, tls, login, find_sent; no mail written.
    With a token provider the login is XOAUTH2 (its detail says so).

    The result names the Sent folder found (``sent_folder``, and the ``find_sent`` step's
    detail). Never raises a TransportError: failures are in the result.
    """
    return await asyncio.to_thread(_probe_blocking, endpoint, asyncio.get_running_loop())
