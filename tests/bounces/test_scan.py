"""Where a pass starts and where it stops: a newly watched INBOX is read from its recent
messages only (not its whole history), and a bounce that arrives before its message's send
is recorded is read again in a later round instead of being dropped (bounded)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from sendas.context import AppContext
from sendas.db.models import BounceMailbox, Message, utcnow
from sendas.outbox.bounces.watch import BounceWatch
from sendas.services.common import Actor
from tests.bounces.conftest import api_message, sample, suppressed, watch_round
from tests.bounces.test_samples import send
from tests.conftest import Person
from tests.outbox.conftest import message
from tests.servers.smtpd import SmtpdFactory

MONTH_AGO = time.time() - 30 * 86400


def last_uid(ctx: AppContext, account_id: int) -> int:
    with ctx.db.read() as s:
        uid = s.scalar(
            select(BounceMailbox.last_uid).where(BounceMailbox.imap_account_id == account_id)
        )
    assert uid is not None
    return uid


def set_sending(ctx: AppContext, message_id: int) -> None:
    """The row as a worker leaves it between the send and its record (lease held)."""
    with ctx.db.write() as s:
        s.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status="sending", lease_owner="w-1",
                    lease_expires_at=utcnow() + timedelta(hours=1))
        )  # fmt: skip


def set_sent(ctx: AppContext, message_id: int) -> None:
    with ctx.db.write() as s:
        s.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status="sent", lease_owner=None, lease_expires_at=None)
        )


async def test_a_bounce_read_before_the_send_is_recorded_is_read_again(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    [ann] = await send(ctx, alice_actor, box.alias_id, [["ann@example.org"]])
    set_sending(ctx, ann.id)
    box.deliver(sample("gmail_not_found.eml", ann))
    watch = BounceWatch(ctx, "test", asyncio.Event(), None)  # one watch: its waits go on

    early = await watch.round_for(box.imap_account_id)
    assert early is not None
    assert (early.read, early.bounces, early.bounced_messages) == (0, 0, [])
    assert last_uid(ctx, box.imap_account_id) == 0  # not past the bounce (UID 1)
    assert early.waiting == 1
    assert message(ctx, ann.id).status == "sending"
    assert suppressed(ctx, alice.id) == {}

    set_sent(ctx, ann.id)  # the record is committed
    later = await watch.round_for(box.imap_account_id)
    assert later is not None and later.waiting is None
    assert later.bounced_messages == [ann.id]
    assert api_message(client, alice.headers, ann.id)["status"] == "bounced"
    assert list(suppressed(ctx, alice.id)) == ["ann@example.org"]
    assert last_uid(ctx, box.imap_account_id) == 1


async def test_a_message_left_sending_past_the_wait_does_not_hold_the_inbox(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    stuck, ben = await send(
        ctx, alice_actor, box.alias_id, [["ann@example.org"], ["ben@example.org"]]
    )
    set_sending(ctx, stuck.id)
    box.deliver(sample("gmail_not_found.eml", stuck))
    box.deliver(sample("gmail_not_found.eml", ben, recipient="ben@example.org"))
    watch = BounceWatch(ctx, "test", asyncio.Event(), None)
    watch.limits = dataclasses.replace(watch.limits, pending_wait_seconds=0)

    result = await watch.round_for(box.imap_account_id)
    assert result is not None and result.waiting is None
    assert (result.read, result.bounced_messages) == (2, [ben.id])  # the one behind it too
    assert message(ctx, stuck.id).status == "sending"  # handled as it stands: left alone


async def test_a_newly_watched_inbox_is_read_from_its_recent_messages(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    old, new = await send(
        ctx, alice_actor, box.alias_id, [["ann@example.org"], ["ben@example.org"]]
    )
    # History received a month ago (one of them a bounce of ours), then a fresh bounce.
    box.deliver(sample("out_of_office.eml", old), received=MONTH_AGO)
    box.deliver(sample("gmail_not_found.eml", old), received=MONTH_AGO)
    box.deliver(sample("out_of_office.eml", new), received=MONTH_AGO)
    box.deliver(sample("gmail_not_found.eml", new, recipient="ben@example.org"))

    result = await watch_round(ctx, box.imap_account_id)
    assert (result.read, result.bounces, result.bounced_messages) == (1, 1, [new.id])
    assert api_message(client, alice.headers, new.id)["status"] == "bounced"
    assert api_message(client, alice.headers, old.id)["status"] == "sent"  # never read
    assert list(suppressed(ctx, alice.id)) == ["ben@example.org"]
    assert last_uid(ctx, box.imap_account_id) == 4


async def test_an_inbox_of_old_mail_only_starts_after_it(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    [ann] = await send(ctx, alice_actor, box.alias_id, [["ann@example.org"]])
    box.deliver(sample("gmail_not_found.eml", ann), received=MONTH_AGO)
    box.deliver(sample("out_of_office.eml", ann), received=MONTH_AGO)

    first = await watch_round(ctx, box.imap_account_id)
    assert (first.read, first.bounced_messages) == (0, [])
    assert last_uid(ctx, box.imap_account_id) == 2
    assert api_message(client, alice.headers, ann.id)["status"] == "sent"

    box.deliver(sample("gmail_not_found.eml", ann))  # arrives after: read
    second = await watch_round(ctx, box.imap_account_id)
    assert (second.read, second.bounced_messages) == (1, [ann.id])
