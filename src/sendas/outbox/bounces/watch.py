"""The bounce watch: a task of the outbox worker that runs rounds over the INBOX of every
IMAP account linked to an alias (:mod:`sendas.outbox.bounces.scan`).

Bounded: at most ``SENDAS_BOUNCE_MAX_ACCOUNTS`` rounds at once (each one connection), the
accounts scanned longest ago first. One connection per account across all workers: a round
holds the account's ``bounce_mailboxes`` lease, which outlives the longest round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Alias, BounceMailbox, ImapAccount, utcnow
from sendas.endpoints import TokenProviders, alias_imap_endpoint, imap_uses_alias_token
from sendas.errors import TransportError
from sendas.imap.endpoint import ImapEndpoint
from sendas.outbox.bounces.scan import (
    MAILBOX,
    RoundResult,
    ScanLimits,
    Waits,
    mailbox_row,
    scan_account,
)

log = logging.getLogger("sendas.outbox.bounces")


@dataclass(frozen=True)
class Watched:
    """An account to watch, through the alias whose credentials reach it."""

    account_id: int
    user_id: int
    alias_id: int


def limits_from_settings(settings: Settings) -> ScanLimits:
    return ScanLimits(
        max_messages=settings.bounce_max_messages,
        max_message_bytes=settings.bounce_max_message_bytes,
        idle_seconds=settings.bounce_idle_seconds,
        lookback_days=settings.bounce_lookback_days,
        pending_wait_seconds=settings.bounce_pending_wait_seconds,
    )


def watched_accounts(session: Session) -> list[Watched]:
    """Accounts linked to an alias that can log in to them (a password, or the alias's
    sign-in token), the ones scanned longest ago (or never) first."""
    pairs = session.execute(
        select(Alias, ImapAccount, BounceMailbox.scanned_at)
        .join(ImapAccount, Alias.imap_account_id == ImapAccount.id)
        .outerjoin(
            BounceMailbox,
            (BounceMailbox.imap_account_id == ImapAccount.id) & (BounceMailbox.mailbox == MAILBOX),
        )
        .order_by(BounceMailbox.scanned_at.is_not(None), BounceMailbox.scanned_at, Alias.id)
    ).all()
    seen: dict[int, Watched] = {}
    for alias, account, _ in pairs:
        usable = bool(account.password_enc) or imap_uses_alias_token(alias, account)
        if usable and account.id not in seen and alias.user_id == account.user_id:
            seen[account.id] = Watched(account.id, account.user_id, alias.id)
    return list(seen.values())


def claim(session: Session, account_id: int, owner: str, seconds: float) -> bool:
    """Take (or renew) the account's lease for ``seconds``; False while another holds it."""
    mailbox_row(session, account_id)
    now = utcnow()
    taken = session.execute(
        update(BounceMailbox)
        .where(
            BounceMailbox.imap_account_id == account_id,
            BounceMailbox.mailbox == MAILBOX,
            or_(
                BounceMailbox.owner.is_(None),
                BounceMailbox.owner == owner,
                BounceMailbox.lease_expires_at < now,
            ),
        )
        .values(owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
    )
    return bool(getattr(taken, "rowcount", 0))


def release(session: Session, account_id: int, owner: str, error: str | None) -> None:
    session.execute(
        update(BounceMailbox)
        .where(
            BounceMailbox.imap_account_id == account_id,
            BounceMailbox.mailbox == MAILBOX,
            BounceMailbox.owner == owner,
        )
        .values(owner=None, lease_expires_at=None, last_error=error, scanned_at=utcnow())
    )


class BounceWatch:
    """Runs until ``stopping`` is set; :meth:`run` returns once its rounds ended."""

    def __init__(
        self,
        ctx: AppContext,
        owner: str,
        stopping: asyncio.Event,
        token_providers: TokenProviders | None,
    ) -> None:
        self.ctx = ctx
        self.owner = owner
        self.stopping = stopping
        self.token_providers = token_providers
        self.settings = ctx.settings
        self.limits = limits_from_settings(ctx.settings)
        self._stop = threading.Event()  # seen by the blocking rounds (IDLE checks it)
        self._rounds: dict[int, asyncio.Task[None]] = {}
        self._waits = Waits()  # bounces waiting for their send's record, across rounds

    @property
    def lease_seconds(self) -> float:
        # A round: connect, login, a pass, IDLE, another pass; each step within the timeout.
        return self.limits.idle_seconds + 10 * self.settings.smtp_timeout + 60

    async def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    await self._tick()
                except Exception:
                    log.exception("bounce watch: listing accounts failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.settings.bounce_poll_seconds)
        finally:
            self._stop.set()
            if self._rounds:
                await asyncio.gather(*self._rounds.values(), return_exceptions=True)

    async def _tick(self) -> None:
        def listing() -> list[Watched]:
            with self.ctx.db.read() as s:
                return watched_accounts(s)

        for w in await asyncio.to_thread(listing):
            if len(self._rounds) >= self.settings.bounce_max_accounts:
                break
            if w.account_id not in self._rounds:
                task = asyncio.create_task(self._run_round(w), name=f"bounces {w.account_id}")
                self._rounds[w.account_id] = task
                task.add_done_callback(self._forget(w.account_id))

    def _forget(self, account_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._rounds.pop(account_id, None)

        return done

    async def _run_round(self, w: Watched) -> None:
        await self.round(w)

    async def round_for(self, account_id: int) -> RoundResult | None:
        """One round over ``account_id`` now (None: not watched, or another worker holds it)."""

        def listing() -> list[Watched]:
            with self.ctx.db.read() as s:
                return watched_accounts(s)

        for w in await asyncio.to_thread(listing):
            if w.account_id == account_id:
                return await self.round(w)
        return None

    async def round(self, w: Watched) -> RoundResult | None:
        """Claim the account, read its INBOX (see :func:`scan_account`), let it go. Failures
        are logged and kept in ``bounce_mailboxes.last_error``; None when nothing ran."""
        db = self.ctx.db

        def take() -> ImapEndpoint | None:
            with db.write() as s:
                if not claim(s, w.account_id, self.owner, self.lease_seconds):
                    return None
                alias, account = s.get(Alias, w.alias_id), s.get(ImapAccount, w.account_id)
                if alias is None or account is None:
                    return None
                return alias_imap_endpoint(
                    alias, account, self.ctx.secrets, self.settings.smtp_timeout,
                    self.token_providers, self.settings.outbound_policy,
                )  # fmt: skip

        error: str | None = None
        result: RoundResult | None = None
        try:
            endpoint = await asyncio.to_thread(take)
            if endpoint is None:
                return None
            loop = asyncio.get_running_loop()
            result = await asyncio.to_thread(
                scan_account, db, endpoint, w.account_id, w.user_id, self.limits,
                stop=self._stop, loop=loop, waits=self._waits,
            )  # fmt: skip
            if result.bounces:
                log.info(
                    "bounces: account %s: %d bounce(s), %d message(s) bounced",
                    w.account_id, result.bounces, len(result.bounced_messages),
                )  # fmt: skip
        except (TransportError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000]
            log.warning("bounces: account %s: %s", w.account_id, error)
        except Exception:
            error = "unexpected error (see the worker's log)"
            log.exception("bounces: account %s: round failed", w.account_id)
        await asyncio.to_thread(self._release, w.account_id, error)
        return result

    def _release(self, account_id: int, error: str | None) -> None:
        with self.ctx.db.write() as s:
            release(s, account_id, self.owner, error)
