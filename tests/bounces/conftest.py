"""Bounce test helpers: an alias sending through an in-process aiosmtpd, linked to a real
Dovecot account whose INBOX receives the bounces (APPENDed as a mail server would file
them), the samples filled in with a sent message's details, and one watch round."""

from __future__ import annotations

import contextlib
import imaplib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Message, Suppression
from sendas.outbox.bounces.scan import RoundResult
from sendas.outbox.bounces.watch import BounceWatch
from sendas.schemas import AliasCreate, ImapCreate
from sendas.services import aliases as alias_service
from sendas.services import imap_accounts as imap_service
from sendas.services.common import Actor
from tests.outbox.conftest import alice_actor  # noqa: F401 (fixture)
from tests.servers.dovecot import DovecotAccount, DovecotServer
from tests.servers.smtpd import PASSWORD, USER

SAMPLES = Path(__file__).parent / "samples"


@dataclass
class Mailbox:
    """An alias (sending to ``smtp``) whose IMAP account is ``account`` on ``dovecot``."""

    dovecot: DovecotServer
    account: DovecotAccount
    imap_account_id: int
    alias_id: int

    @property
    def address(self) -> str:
        return self.account.username

    def deliver(self, raw: bytes, received: float | None = None) -> None:
        """File ``raw`` in the INBOX, as the receiving server does with a bounce, received
        now or at ``received`` (a Unix time: the message's IMAP internal date)."""
        imap = self.dovecot.connect(self.account)
        when = time.time() if received is None else received
        try:
            typ, data = imap.append("INBOX", "", imaplib.Time2Internaldate(when), raw)
            assert typ == "OK", data
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def inbox(self) -> list[Any]:
        return self.dovecot.read_mailbox(self.account, "INBOX")


def link_mailbox(
    ctx: AppContext,
    actor: Actor,
    dovecot: DovecotServer,
    smtp_port: int,
    *,
    credentials: bool = True,
    name: str = "Work",
) -> Mailbox:
    """A new Dovecot account, its IMAP account, and an alias sending from its address to
    the SMTP server on ``smtp_port`` (plain text; with the aiosmtpd fixture's login, or
    none for a relay that takes mail from 127.0.0.1)."""
    account = dovecot.add_account("bounces", layout="special")  # copies go to "Sent Items"
    data = ImapCreate(
        imap_server=f"{dovecot.host}:{dovecot.imaps_port}",
        tls="implicit",
        username=account.username,
        password=SecretStr(account.password),
        ca_bundle=dovecot.ca_pem,
    )
    login: dict[str, Any] = {}
    if credentials:
        login = {"smtp_username": USER, "smtp_password": SecretStr(PASSWORD),
                 "allow_plaintext_auth": True}  # fmt: skip
    with ctx.db.write() as s:
        imap_id = imap_service.create_imap_account(s, actor, data, ctx.secrets).id
        alias, _ = alias_service.create_alias(
            s,
            actor,
            AliasCreate(
                description=name, alias_name=name, from_address=account.username,
                smtp_server=f"127.0.0.1:{smtp_port}", tls="none", imap_account_id=imap_id,
                **login,
            ),
            ctx.secrets,
        )  # fmt: skip
    return Mailbox(dovecot, account, imap_id, alias.id)


def sample(name: str, m: Message, recipient: str | None = None, **extra: str) -> bytes:
    """The sample ``name`` filled in for message ``m`` (and one of its recipients)."""
    text = (SAMPLES / name).read_text()
    values = {
        "sender": m.envelope_from,
        "recipient": recipient or m.recipients[0],
        "message_id": m.message_id,
        "subject": m.subject,
        **extra,
    }
    return text.format(**values).replace("\n", "\r\n").encode()


async def watch_round(ctx: AppContext, account_id: int, owner: str = "test") -> RoundResult:
    """One watch round over the account, by a new watch (as after a restart)."""
    import asyncio

    watch = BounceWatch(ctx, owner, asyncio.Event(), None)
    result = await watch.round_for(account_id)
    assert result is not None, "the account was not watched"
    return result


def api_message(client: TestClient, headers: dict[str, str], message_id: int) -> dict[str, Any]:
    r = client.get(f"/api/messages/{message_id}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def suppressed(ctx: AppContext, user_id: int) -> dict[str, Suppression]:
    with ctx.db.read() as s:
        rows = s.scalars(select(Suppression).where(Suppression.user_id == user_id)).all()
        return {r.address: r for r in rows}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """As tests/conftest.py's, with rounds that read once and do not wait in IDLE (the
    watch inside a worker, with IDLE, is tested in test_watch.py)."""
    return Settings(
        data_dir=tmp_path / "data", embedded_worker=False, smtp_timeout=3.0,
        bounce_scan=False, bounce_idle_seconds=0,
    )  # fmt: skip


@pytest.fixture
def mailbox_factory(ctx: AppContext, alice_actor: Actor, dovecot_server: DovecotServer) -> Any:  # noqa: F811
    def make(alias_server: Any, **options: Any) -> Mailbox:
        return link_mailbox(ctx, alice_actor, dovecot_server, alias_server.port, **options)

    return make
