"""Settling ``unknown`` messages from the mailbox: is the message in its Sent folder?

A message becomes ``unknown`` when the link broke or the worker died after the data may
have reached the server. When its alias has an IMAP account, a worker looks for it in that
account's Sent folder by Message-ID (``UID SEARCH HEADER Message-ID``):

* found: the server accepted it -> ``sent``, hinted :data:`CONFIRMED_IN_SENT`;
* not found :attr:`SettleConfig.after_seconds` after it was last on the wire, on a mailbox
  that files its own copy of accepted mail (Gmail, Microsoft 365..., or learnt after a send:
  ``ImapAccount.files_sent_copy``) and that is the SMTP login's own mailbox (the IMAP user
  name is the SMTP user name, or the alias's sign-in token is used for IMAP) -> it was never
  accepted: ``queued`` again, same bytes and Message-ID, sent once;
* otherwise it stays ``unknown`` and its hint says what was checked and when.

Bounded: at most :attr:`SettleConfig.batch` messages per pass, one pass every
:attr:`SettleConfig.every_seconds`, one IMAP connection per account per pass, a few at once.
Messages are claimed by moving their ``next_attempt_at`` (unused while ``unknown``), so two
workers never check the same one, and a message not settled is looked at less and less often.
A pass reads only the lanes of aliases with an IMAP account: the ``unknown`` messages of the
others, which nothing can check and which stay due, are never read one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from sendas.config import Settings
from sendas.db.models import Alias, Campaign, ImapAccount, Message, utcnow
from sendas.endpoints import TokenProviders, alias_imap_endpoint, imap_uses_alias_token
from sendas.errors import TransportError
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.providers import files_own_sent_copy
from sendas.imap.search import SentLookup, look_up_in_sent
from sendas.net.policy import OutboundPolicy
from sendas.outbox.lanes import alias_lanes_where, lanes_holding
from sendas.outbox.settle import mark_sent, send_again
from sendas.outbox.tables import chunks
from sendas.secrets import SecretBox
from sendas.statuses import CampaignStatus, MessageStatus

log = logging.getLogger("sendas.outbox")

CONFIRMED_IN_SENT = "Confirmed in the Sent folder."
"""The hint of a message settled ``sent`` because its copy is in Sent (counted by bench/chaos)."""

_DECIDE = "Check the recipient's mailbox, then choose 'send again' or 'mark as sent'."

Run = Callable[[Callable[[Session], Any]], Coroutine[Any, Any, Any]]
"""Runs a function in a write transaction (the worker's TxQueue.run)."""


@dataclass(frozen=True)
class SettleConfig:
    """How much settling a worker does. Raises ValueError for values that cannot work."""

    every_seconds: float = 60.0
    batch: int = 200
    after_seconds: float = 180.0
    timeout: float = 30.0
    connections: int = 4
    """IMAP connections (accounts) checked at once."""

    def __post_init__(self) -> None:
        if min(self.every_seconds, self.after_seconds, self.timeout) <= 0:
            raise ValueError("every_seconds, after_seconds and timeout must be positive")
        if self.batch < 1 or self.connections < 1:
            raise ValueError("batch and connections must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> SettleConfig:
        return cls(
            every_seconds=settings.settle_every_seconds,
            batch=settings.settle_batch,
            after_seconds=settings.settle_after_seconds,
            timeout=settings.smtp_timeout,
        )


_MAY_BE_ACCEPTED = (
    "This mail server is not known to file its own copy of accepted mail, so the message "
    "may still have been accepted."
)
_OTHER_MAILBOX = (
    "The IMAP account is not the sending login's mailbox (its user name is not the alias's "
    "SMTP user name), so a missing copy proves nothing: the message may still have been "
    "accepted."
)


@dataclass(frozen=True)
class _Item:
    id: int
    message_id: str
    since: datetime  # when it was last possibly on the wire
    claim: datetime  # the next_attempt_at the picker wrote: the row is still the one checked


@dataclass
class _Group:
    """The unknown messages checked over one IMAP connection (one account, one login)."""

    label: str
    files_copy: bool
    endpoint: ImapEndpoint | None
    problem: str | None
    not_filing: str = _MAY_BE_ACCEPTED  # why a missing copy does not mean "never accepted"
    items: list[_Item] = field(default_factory=list)


@dataclass(frozen=True)
class _Checked:
    group: _Group
    lookup: SentLookup | None
    error: str | None


def _since(updated_at: datetime, lease_expires_at: datetime | None) -> datetime:
    # A worker holding the message may have been submitting it until its lease ended.
    return max(updated_at, lease_expires_at) if lease_expires_at else updated_at


def _login(alias: Alias) -> str:
    return alias.smtp_username.strip().casefold()


def is_login_mailbox(alias: Alias, account: ImapAccount) -> bool:
    """Whether ``account`` is the mailbox the alias's SMTP login files its sent mail into:
    only then does a copy missing from its Sent folder say anything (an alias may send as
    bob@gmail.com and read bounces in a company mailbox, or "Send As" a shared mailbox)."""
    if imap_uses_alias_token(alias, account):
        return True
    return bool(_login(alias)) and account.username.strip().casefold() == _login(alias)


def _account_group(
    alias: Alias,
    sole_server: bool,
    box: SecretBox,
    cfg: SettleConfig,
    token_providers: TokenProviders | None,
    outbound: OutboundPolicy,
) -> _Group:
    account = alias.imap_account
    assert account is not None  # picked by its imap_account_id
    label = f"{account.username} on {account.imap_host}"
    # What was learnt is about the account's mail as one SMTP server and login file it:
    # trusted only while every alias using the account sends through that server with that
    # login (else a "yes" learnt through one could send again what another did accept).
    files = files_own_sent_copy(alias.smtp_host) or (
        account.files_sent_copy is True and sole_server
    )
    mine = is_login_mailbox(alias, account)
    group = _Group(label, files and mine, None, None)
    if files and not mine:
        group.not_filing = _OTHER_MAILBOX
    if not account.password_enc and not imap_uses_alias_token(alias, account):
        group.problem = "the IMAP account has no password"
        return group
    try:
        group.endpoint = alias_imap_endpoint(
            alias, account, box, cfg.timeout, token_providers, outbound
        )
    except ValueError as exc:
        group.problem = f"the IMAP account cannot be used: {exc}"
    return group


def _sole_server(session: Session, alias: Alias) -> bool:
    """Whether every alias linked to ``alias``'s IMAP account sends through its server with
    its SMTP login."""
    others = session.scalar(
        select(func.count())
        .select_from(Alias)
        .where(
            Alias.imap_account_id == alias.imap_account_id,
            (Alias.smtp_host != alias.smtp_host)
            | (Alias.smtp_port != alias.smtp_port)
            | (func.lower(func.trim(Alias.smtp_username)) != _login(alias)),
        )
    )
    return not others


@dataclass
class _Picker:
    """Claims the unknown messages due for a check and groups them by IMAP connection."""

    cfg: SettleConfig
    box: SecretBox
    token_providers: TokenProviders | None
    outbound: OutboundPolicy

    def __call__(self, session: Session) -> list[_Group]:
        now = utcnow()
        m = Message
        rows: list[Any] = []
        for lanes in chunks(_checkable_lanes(session)):
            rows += session.execute(
                select(m.id, m.message_id, m.alias_id, m.updated_at, m.lease_expires_at,
                       m.next_attempt_at)
                .join(Alias, Alias.id == m.alias_id)
                .where(m.status == MessageStatus.UNKNOWN, m.lane.in_(lanes),
                       m.next_attempt_at <= now, Alias.imap_account_id.is_not(None))
                .order_by(m.next_attempt_at, m.id)
                .limit(self.cfg.batch)
                .with_for_update(skip_locked=True, of=m)
            ).all()  # fmt: skip
        rows = sorted(rows, key=lambda r: (r.next_attempt_at, r.id))[: self.cfg.batch]
        if not rows:
            return []
        # Claimed: another worker's pass skips them until the check is recorded.
        claim = now + timedelta(seconds=self.cfg.every_seconds + 4 * self.cfg.timeout)
        session.execute(
            update(m)
            .where(m.id.in_([r.id for r in rows]))
            .values(next_attempt_at=claim, updated_at=m.updated_at)
        )
        groups: dict[tuple[int, int | None, str, int, str], _Group] = {}
        for row in rows:
            alias = session.get_one(Alias, row.alias_id)
            token = alias.id if imap_uses_alias_token(alias, alias.imap_account) else None
            key = (alias.imap_account_id or 0, token, alias.smtp_host, alias.smtp_port,
                   _login(alias))  # fmt: skip
            if key not in groups:
                groups[key] = _account_group(
                    alias, _sole_server(session, alias), self.box, self.cfg,
                    self.token_providers, self.outbound,
                )  # fmt: skip
            since = _since(row.updated_at, row.lease_expires_at)
            groups[key].items.append(_Item(row.id, row.message_id, since, claim))
        return list(groups.values())


_WITH_IMAP = select(Alias.id).where(
    Alias.id.in_(bindparam("ids", expanding=True)), Alias.imap_account_id.is_not(None)
)


def _checkable_lanes(session: Session) -> list[str]:
    """The lanes holding ``unknown`` mail whose alias has an IMAP account to look in."""
    return alias_lanes_where(session, lanes_holding(session, MessageStatus.UNKNOWN), _WITH_IMAP)


async def _check(group: _Group, slots: asyncio.Semaphore) -> _Checked:
    ids = [i.message_id for i in group.items if i.message_id]
    if group.endpoint is None or not ids:
        return _Checked(group, None, group.problem or "the message has no Message-ID")
    try:
        async with slots:
            return _Checked(group, await look_up_in_sent(group.endpoint, ids), None)
    except TransportError as exc:
        step = f" ({exc.step})" if exc.step else ""
        return _Checked(group, None, f"{exc}{step}")


def _when(now: datetime) -> str:
    return f"{now:%Y-%m-%d %H:%M} UTC"


@dataclass
class _Recorder:
    """Records the checks of one pass (the rows are locked and read again: the owner may
    have settled a message meanwhile)."""

    cfg: SettleConfig
    checked: list[_Checked]

    def __call__(self, session: Session) -> tuple[int, int]:
        now = utcnow()
        sent = queued = 0
        for check in self.checked:
            for item in check.group.items:
                message = session.get(Message, item.id, with_for_update=True)
                if message is None or not _still_claimed(message, item):
                    continue
                outcome = self._record(session, message, item, check, now)
                sent += outcome == MessageStatus.SENT
                queued += outcome == MessageStatus.QUEUED
        return sent, queued

    def _record(
        self, session: Session, message: Message, item: _Item, check: _Checked, now: datetime
    ) -> str:
        group, every = check.group, timedelta(seconds=self.cfg.every_seconds)
        if check.lookup is None:
            hint = (
                f"Could not look for this message in the Sent folder of {group.label} at "
                f"{_when(now)}: {check.error}. {_DECIDE}"
            )
            # Tried again, less and less often: after as long again as it has been unknown.
            return self._stays(session, item, hint, now + max(every, now - item.since))
        folder = check.lookup.folder
        if item.message_id not in check.lookup.searched:
            hint = f"This message has no Message-ID that can be looked for in {folder}. {_DECIDE}"
            return self._stays(session, item, hint, now + timedelta(days=3650))
        if item.message_id in check.lookup.found:
            mark_sent(session, message)
            message.hint = CONFIRMED_IN_SENT
            message.sent_copy = "skipped"  # the server's own copy is there: none of ours
            message.sent_copy_detail = f"the copy in {folder} of {group.label} is the server's"
            return MessageStatus.SENT
        due = item.since + timedelta(seconds=self.cfg.after_seconds)
        if group.files_copy and now >= due and _may_queue(session, message):
            send_again(session, message)
            message.hint = (
                f"Not in {folder} of {group.label} at {_when(now)}, and that mailbox files "
                "its own copy of every message the server accepts: the server never accepted "
                "it, so it was queued again (same Message-ID)."
            )
            return MessageStatus.QUEUED
        if group.files_copy:
            hint = (
                f"Not in {folder} of {group.label} yet at {_when(now)}; checked again until "
                f"{_when(due)}, then queued again if still missing (that mailbox files its own "
                "copy of accepted mail)."
            )
            return self._stays(session, item, hint, max(due, now + every))
        hint = (
            f"Not found in {folder} of {group.label} at {_when(now)}. {group.not_filing} {_DECIDE}"
        )
        return self._stays(session, item, hint, now + max(every, now - item.since))

    @staticmethod
    def _stays(session: Session, item: _Item, hint: str, next_check: datetime) -> str:
        # updated_at kept: it dates the message's last time on the wire (see _since).
        session.execute(
            update(Message)
            .where(Message.id == item.id)
            .values(hint=hint, next_attempt_at=next_check, updated_at=Message.updated_at)
        )
        return MessageStatus.UNKNOWN


def _still_claimed(message: Message, item: _Item) -> bool:
    """The row is still the unknown message this pass claimed: not settled meanwhile, nor
    queued, sent and unknown again (another worker's pass, then its own claim)."""
    return message.status == MessageStatus.UNKNOWN and message.next_attempt_at == item.claim


def _may_queue(session: Session, message: Message) -> bool:
    """A message of a cancelled form letter stays as it is: nothing of it goes out again."""
    if message.campaign_id is None:
        return True
    campaign = session.get(Campaign, message.campaign_id)
    return campaign is not None and campaign.status != CampaignStatus.CANCELLED


class SentSettler:
    """One worker's periodic settling of unknown messages (see the module docstring)."""

    def __init__(
        self,
        run: Run,
        box: SecretBox,
        cfg: SettleConfig,
        *,
        token_providers: TokenProviders | None,
        outbound: OutboundPolicy,
    ) -> None:
        self._run = run
        self.cfg = cfg
        self._pick = _Picker(cfg, box, token_providers, outbound)
        self._slots = asyncio.Semaphore(cfg.connections)

    async def settle_once(self) -> tuple[int, int]:
        """One pass: returns how many messages became ``sent`` and ``queued``."""
        groups: list[_Group] = await self._run(self._pick)
        if not groups:
            return 0, 0
        checked = await asyncio.gather(*(_check(g, self._slots) for g in groups))
        result: tuple[int, int] = await self._run(_Recorder(self.cfg, list(checked)))
        if any(result):
            log.info("settled from the Sent folder: %d sent, %d queued again", *result)
        return result

    async def run(self, stopping: asyncio.Event) -> None:
        """A pass now and every ``every_seconds`` until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await self.settle_once()
            except Exception:
                log.exception("settling unknown messages failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.cfg.every_seconds)


def remember_filing(session: Session, lane: str, filed: bool | None) -> None:
    """After a copy to Sent on ``lane`` (``alias:<id>``): remember on the alias's IMAP
    account whether the server had filed its own copy. A "yes" always wins; a "no" is only
    written while nothing is known (a server may file its copy a moment late). Only for the
    sending login's own mailbox (:func:`is_login_mailbox`): a server files its copy there,
    so what another mailbox's Sent held says nothing about the server."""
    if filed is None or not lane.startswith("alias:"):
        return
    alias = session.get(Alias, int(lane.split(":", 1)[1]))
    account = alias.imap_account if alias is not None else None
    if alias is None or account is None or not is_login_mailbox(alias, account):
        return
    query = update(ImapAccount).where(ImapAccount.id == account.id)
    if not filed:
        query = query.where(ImapAccount.files_sent_copy.is_(None))
    session.execute(query.values(files_sent_copy=filed))
