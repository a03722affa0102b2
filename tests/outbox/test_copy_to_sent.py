"""The copy to Sent through the real send path: a real SMTP server, a real Dovecot.

The copy is the exact bytes that were sent, flagged \\Seen; an IMAP failure is recorded
beside the message and never turns a sent message into a failed one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sendas.context import AppContext
from sendas.db.models import AuditEvent
from sendas.outbox import worker
from sendas.schemas import ImapCreate
from sendas.services import imap_accounts as imap_service
from sendas.services.common import Actor
from tests.outbox.conftest import make_alias, message, queue, running_worker, wait_for
from tests.servers.smtpd import SmtpdFactory


def add_imap(ctx: AppContext, actor: Actor, dovecot: Any, account: Any, password: str) -> int:
    from pydantic import SecretStr

    data = ImapCreate(
        imap_server=f"{dovecot.host}:{dovecot.imaps_port}",
        tls="implicit",
        username=account.username,
        password=SecretStr(password),
        ca_bundle=dovecot.ca_pem,
    )
    with ctx.db.write() as s:
        return imap_service.create_imap_account(s, actor, data, ctx.secrets).id


def copy_recorded(ctx: AppContext, message_id: int) -> bool:
    return message(ctx, message_id).sent_copy is not None


async def test_sent_message_is_appended_byte_identical_and_seen(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, dovecot_server: Any
) -> None:
    server = await smtpd("none", pipelining=True)
    account = dovecot_server.add_account("sentcopy", layout="special")
    imap_id = add_imap(ctx, alice_actor, dovecot_server, account, account.password)
    alias_id = make_alias(ctx, alice_actor, server, imap_account_id=imap_id)
    [mid] = queue(ctx, alice_actor, alias_id, 1)

    async with running_worker(ctx):
        await wait_for(lambda: copy_recorded(ctx, mid))

    sent = message(ctx, mid)
    assert sent.status == "sent" and sent.sent_copy == "appended", sent.sent_copy_detail
    stored = dovecot_server.read_mailbox(account, "Sent Items")
    assert len(stored) == 1
    assert stored[0].raw == sent.raw  # exactly the bytes that went out
    assert "\\Seen" in stored[0].flags
    assert server.recorder.messages[0].data.replace(b"\r\n", b"\n") == (sent.raw or b"").replace(
        b"\r\n", b"\n"
    )


async def test_imap_failure_leaves_message_sent_with_copy_failed(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, dovecot_server: Any
) -> None:
    server = await smtpd("none", pipelining=True)
    account = dovecot_server.add_account("badcopy", layout="plain")
    imap_id = add_imap(ctx, alice_actor, dovecot_server, account, "not-the-password")
    alias_id = make_alias(ctx, alice_actor, server, imap_account_id=imap_id)
    [mid] = queue(ctx, alice_actor, alias_id, 1)

    async with running_worker(ctx):
        await wait_for(lambda: copy_recorded(ctx, mid))

    sent = message(ctx, mid)
    assert sent.status == "sent"
    assert sent.sent_copy == "failed" and sent.sent_copy_detail
    assert "not-the-password" not in (sent.sent_copy_detail or "")
    assert len(server.recorder.messages) == 1
    assert dovecot_server.read_mailbox(account, "INBOX.Sent") == []


async def test_deleting_an_alias_cancels_its_waiting_mail(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    from sendas.services import aliases as alias_service

    server = await smtpd("none")
    alias_id = make_alias(ctx, alice_actor, server)
    ids = queue(ctx, alice_actor, alias_id, 3)
    with ctx.db.write() as s:
        alias_service.delete_alias(s, alice_actor, alias_id)
    for mid in ids:
        gone = message(ctx, mid)
        assert gone.status == "cancelled" and gone.hint and "deleted" in gone.hint


async def test_a_record_retried_after_its_commit_writes_one_audit_row(
    ctx: AppContext,
    alice_actor: Actor,
    smtpd: SmtpdFactory,
    dovecot_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record of a refused copy commits, then its answer is lost with the connection:
    the write queue runs it again, and the refusal is audited once, not twice."""
    server = await smtpd("none", pipelining=True)
    account = dovecot_server.add_account("twiceaudit", layout="plain")
    imap_id = add_imap(ctx, alice_actor, dovecot_server, account, "not-the-password")
    alias_id = make_alias(ctx, alice_actor, server, imap_account_id=imap_id)
    [mid] = queue(ctx, alice_actor, alias_id, 1)
    calls: list[int] = []
    real_record, real_write = worker.record_sent_copy, ctx.db.write

    def record(session: Session, *args: Any) -> None:
        calls.append(1)
        real_record(session, *args)

    @contextmanager
    def write() -> Iterator[Session]:
        before = len(calls)
        with real_write() as session:
            yield session
        if before == 0 and len(calls) == 1:  # committed; the answer "lost"
            raise OperationalError(
                "COMMIT", {}, ConnectionError("lost"), connection_invalidated=True
            )

    monkeypatch.setattr(worker, "record_sent_copy", record)
    monkeypatch.setattr(ctx.db, "write", write)
    async with running_worker(ctx):
        await wait_for(lambda: len(calls) >= 2 and copy_recorded(ctx, mid))
    assert message(ctx, mid).sent_copy == "failed"
    with ctx.db.read() as s:
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "imap.auth_failed"))
        assert [e.target_id for e in refused] == [imap_id]
