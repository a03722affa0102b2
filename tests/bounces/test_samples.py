"""Bounces in Gmail's, Microsoft 365's and qmail's layouts and an out-of-office reply, filed
in a real Dovecot INBOX after real sends (aiosmtpd), read by the watch, seen through the API.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from sendas.api import create_app
from sendas.context import AppContext
from sendas.db.models import BounceMailbox, Message
from sendas.outbox.counts import full_counts
from sendas.services.common import Actor
from tests.bounces.conftest import api_message, sample, suppressed, watch_round
from tests.conftest import Person
from tests.outbox.conftest import all_final, message, queue, running_worker, wait_for
from tests.servers.smtpd import SmtpdFactory
from tests.web.test_connection_result import log_in

M365_NOT_FOUND = {
    "status": "5.1.10",
    "diagnostic": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
    "address lookup",
}
M365_EXPIRED = {
    "status": "4.4.7",
    "diagnostic": "450 4.4.7 QUEUE.Expired; message expired",
}


async def send(ctx: AppContext, actor: Actor, alias_id: int, to: list[list[str]]) -> list[Message]:
    """Queue one message per recipient list, send them all, return the sent rows."""
    ids = [queue(ctx, actor, alias_id, 1, to=rcpts, subject="Report")[0] for rcpts in to]
    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids))
    rows = [message(ctx, i) for i in ids]
    assert [m.status for m in rows] == ["sent"] * len(rows)
    return rows


async def test_hard_bounces_mark_and_suppress_and_an_out_of_office_does_not(
    ctx: AppContext,
    client: TestClient,
    alice: Person,
    alice_actor: Actor,
    smtpd: SmtpdFactory,
    mailbox_factory: Any,
) -> None:
    box = mailbox_factory(await smtpd("none", pipelining=True))
    ann, ben, cat, dan = await send(
        ctx, alice_actor, box.alias_id,
        [["ann@example.org"], ["ben@example.org"], ["cat@example.org"], ["dan@example.org"]],
    )  # fmt: skip
    box.deliver(sample("gmail_not_found.eml", ann))
    box.deliver(sample("m365_ndr.eml", ben, **M365_NOT_FOUND))
    box.deliver(sample("out_of_office.eml", cat))
    box.deliver(sample("qmail_failure.eml", dan))

    result = await watch_round(ctx, box.imap_account_id)
    assert (result.read, result.bounces, result.auto_replies) == (4, 3, 1)

    a = api_message(client, alice.headers, ann.id)
    assert a["status"] == "bounced"
    assert "5.1.1" in a["server_reply"] and "User unknown" in a["server_reply"]
    assert a["recipient_results"]["ann@example.org"]["status"] == "bounced"
    assert a["recipient_results"]["ann@example.org"]["status_code"] == "5.1.1"
    b = api_message(client, alice.headers, ben.id)
    assert b["status"] == "bounced"
    assert "5.1.10 RESOLVER.ADR.RecipientNotFound" in b["server_reply"]
    assert b["hint"] and "suppression list" in b["hint"]
    c = api_message(client, alice.headers, cat.id)
    assert c["status"] == "sent"  # the out-of-office reply is not a bounce
    d = api_message(client, alice.headers, dan.id)
    assert d["status"] == "bounced" and "5.1.1" in d["server_reply"]  # qmail: flufl.bounce

    listed = suppressed(ctx, alice.id)
    assert sorted(listed) == ["ann@example.org", "ben@example.org", "dan@example.org"]
    assert listed["ben@example.org"].source == "bounce"
    assert listed["ben@example.org"].message_id == ben.id
    assert "5.1.10" in (listed["ben@example.org"].reason or "")

    r = client.get("/api/messages?status=bounced", headers=alice.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"] if isinstance(body, dict) else body
    assert sorted(m["id"] for m in items) == sorted([ann.id, ben.id, dan.id])

    # Nothing was deleted, moved or flagged.
    inbox = box.inbox()
    assert len(inbox) == 4
    # \Recent stays too: the watch EXAMINEs (read-only) and never claims the messages.
    assert all(m.flags == {"\\Recent"} for m in inbox), [m.flags for m in inbox]


async def test_a_restart_does_not_handle_a_bounce_twice_and_a_new_uidvalidity_is_safe(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    [ann] = await send(ctx, alice_actor, box.alias_id, [["ann@example.org"]])
    box.deliver(sample("gmail_not_found.eml", ann))
    first = await watch_round(ctx, box.imap_account_id, owner="worker-1")
    assert first.bounced_messages == [ann.id] and first.suppressed == ["ann@example.org"]
    before = api_message(client, alice.headers, ann.id)

    again = await watch_round(ctx, box.imap_account_id, owner="worker-2")  # a new watch
    assert (again.read, again.bounced_messages, again.suppressed) == (0, [], [])

    # The server renumbered the mailbox: everything is read again, nothing changes twice.
    with ctx.db.write() as s:
        s.execute(update(BounceMailbox).values(uidvalidity=1))
    renumbered = await watch_round(ctx, box.imap_account_id, owner="worker-3")
    assert renumbered.read == 1 and renumbered.bounces == 1
    assert (renumbered.bounced_messages, renumbered.suppressed) == ([], [])
    after = api_message(client, alice.headers, ann.id)
    assert after["status"] == "bounced"
    assert after["recipient_results"] == before["recipient_results"]
    assert list(suppressed(ctx, alice.id)) == ["ann@example.org"]
    assert len(box.inbox()) == 1


async def test_a_soft_bounce_marks_the_message_without_suppressing(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    admin: Person, smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    [ann] = await send(ctx, alice_actor, box.alias_id, [["ann@example.org"]])
    box.deliver(sample("m365_ndr.eml", ann, **M365_EXPIRED))
    await watch_round(ctx, box.imap_account_id)

    a = api_message(client, alice.headers, ann.id)
    assert a["status"] == "bounced"
    assert "4.4.7 QUEUE.Expired" in a["server_reply"]
    assert a["recipient_results"]["ann@example.org"]["permanent"] is False
    assert "temporary" in a["hint"]
    assert suppressed(ctx, alice.id) == {}

    # The message page and the list's filter show it as a user sees them.
    with TestClient(create_app(ctx.settings, ctx=ctx), follow_redirects=False) as web:
        log_in(web, alice)
        page = web.get(f"/messages/{ann.id}")
        assert page.status_code == 200
        assert "st-bounced" in page.text and "4.4.7 QUEUE.Expired" in page.text
        listed = web.get("/sent?status=bounced")
        assert listed.status_code == 200 and f"/messages/{ann.id}" in listed.text
        assert f"/messages/{ann.id}" not in web.get("/sent?status=sent").text


async def test_one_email_to_three_is_bounced_only_when_all_three_bounced(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    rcpts = ["ann@example.org", "ben@example.org", "cat@example.org"]
    [m] = await send(ctx, alice_actor, box.alias_id, [rcpts])
    box.deliver(sample("gmail_not_found.eml", m, "ben@example.org"))
    await watch_round(ctx, box.imap_account_id)

    one = api_message(client, alice.headers, m.id)
    assert one["status"] == "sent"
    assert one["recipient_results"]["ben@example.org"]["status"] == "bounced"
    assert one["recipient_results"]["ann@example.org"]["status"] == "sent"
    assert list(suppressed(ctx, alice.id)) == ["ben@example.org"]

    box.deliver(sample("m365_ndr.eml", m, "ann@example.org", **M365_NOT_FOUND))
    box.deliver(sample("qmail_failure.eml", m, "cat@example.org"))
    await watch_round(ctx, box.imap_account_id)
    all_three = api_message(client, alice.headers, m.id)
    assert all_three["status"] == "bounced"
    assert {r["status"] for r in all_three["recipient_results"].values()} == {"bounced"}
    assert sorted(suppressed(ctx, alice.id)) == rcpts


@pytest.mark.parametrize(
    ("layout", "reported"),
    [
        ("gmail_not_found.eml", "ben@xn--bcher-kva.example.org"),
        ("m365_ndr.eml", "Ben@Bücher.example.org"),  # an RFC 6533 (SMTPUTF8) report
    ],
)
async def test_either_spelling_of_an_idn_domain_bounces_and_suppresses_one_mailbox(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any, layout: str, reported: str,
) -> None:  # fmt: skip
    """The envelope holds the punycode spelling; a report may use either. The list keeps
    the Unicode one, as an address added by hand (so a later letter to either skips it)."""
    box = mailbox_factory(await smtpd("none", pipelining=True))
    [m] = await send(
        ctx, alice_actor, box.alias_id, [["ann@example.org", "ben@bücher.example.org"]]
    )
    envelope = "ben@xn--bcher-kva.example.org"
    assert m.recipients == ["ann@example.org", envelope]
    box.deliver(sample(layout, m, reported, **M365_NOT_FOUND))
    await watch_round(ctx, box.imap_account_id)

    one = api_message(client, alice.headers, m.id)
    assert one["recipient_results"][envelope]["status"] == "bounced"
    assert one["recipient_results"]["ann@example.org"]["status"] == "sent"
    assert list(suppressed(ctx, alice.id)) == ["ben@bücher.example.org"]
    r = client.post(
        "/api/suppressions", json={"address": "BEN@bücher.example.org"}, headers=alice.headers
    )
    assert r.status_code == 422, r.text  # the same mailbox: listed already


async def test_a_bounce_of_another_users_message_changes_nothing(
    ctx: AppContext, client: TestClient, alice: Person, bob: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    server = await smtpd("none", pipelining=True)
    box = mailbox_factory(server)
    bob_actor = Actor(bob.id, bob.email, False)
    from tests.outbox.conftest import make_alias

    bob_alias = make_alias(ctx, bob_actor, server, name="Bob")
    [bobs] = await send(ctx, bob_actor, bob_alias, [["ann@example.org"]])
    box.deliver(sample("gmail_not_found.eml", bobs))  # in alice's INBOX
    result = await watch_round(ctx, box.imap_account_id)
    assert result.bounces == 1 and result.bounced_messages == []
    assert api_message(client, bob.headers, bobs.id)["status"] == "sent"
    assert suppressed(ctx, bob.id) == {} and suppressed(ctx, alice.id) == {}


async def test_a_form_letters_counts_move_from_sent_to_bounced(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, mailbox_factory: Any,
) -> None:  # fmt: skip
    box = mailbox_factory(await smtpd("none", pipelining=True))
    letter = {
        "alias_id": box.alias_id,
        "subject": "Hello {{ first }}",
        "text": "Dear {{ first }}",
        "recipients": [
            {"email": "ann@example.org", "fields": {"first": "Ann"}},
            {"email": "ben@example.org", "fields": {"first": "Ben"}},
        ],
    }
    r = client.post("/api/campaigns", json=letter, headers=alice.headers)
    assert r.status_code == 202, r.text
    campaign_id = r.json()["id"]
    with ctx.db.read() as s:
        ids = list(s.scalars(select(Message.id).where(Message.campaign_id == campaign_id)))
    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids), within=90)  # render processes start first
    assert {message(ctx, i).status for i in ids} == {"sent"}
    ben = next(m for m in (message(ctx, i) for i in ids) if m.recipients == ["ben@example.org"])
    box.deliver(sample("m365_ndr.eml", ben, **M365_NOT_FOUND))
    await watch_round(ctx, box.imap_account_id)

    seen = client.get(f"/api/campaigns/{campaign_id}", headers=alice.headers).json()
    assert seen["counts"]["sent"] == 1 and seen["counts"]["bounced"] == 1
    with ctx.db.read() as s:
        assert full_counts(s, campaign_id) == {"sent": 1, "bounced": 1}
    assert list(suppressed(ctx, alice.id)) == ["ben@example.org"]
