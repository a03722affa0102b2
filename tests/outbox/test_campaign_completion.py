"""A form letter is ``completed`` by the outbox, in the transaction that records its last
message, before anyone reads it (reading never writes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from sendas.context import AppContext
from sendas.db.models import Campaign, Message, utcnow
from sendas.outbox.completion import complete_campaigns
from sendas.outbox.counts import recount
from sendas.schemas import CampaignTemplatesIn, RecipientIn
from sendas.services import messages as message_service
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.lifecycle import pause_campaign, resume_campaign
from sendas.services.campaigns.progress import campaign_out
from sendas.services.campaigns.recipients import json_rows
from sendas.services.common import Actor
from tests.outbox.conftest import make_alias, running_worker, wait_for
from tests.servers.smtpd import SmtpdFactory


def form_letter(ctx: AppContext, actor: Actor, alias_id: int, count: int) -> int:
    recipients = [RecipientIn(email=f"r{i}@example.org", fields={"n": str(i)})
                  for i in range(count)]  # fmt: skip
    data = CampaignTemplatesIn(alias_id=alias_id, subject="Hi {{ n }}",
                                                text="Hello {{ n }}\n")  # fmt: skip
    return create_campaign(ctx.db, actor, data, json_rows(recipients)).id


Snapshot = tuple[str, datetime | None, int]


def snapshot(ctx: AppContext, campaign_id: int) -> Snapshot:
    """Straight from the rows, in one read transaction (one consistent view): the campaign's
    status and completed_at, and how many of its messages may still go out."""
    with ctx.db.read() as s:
        waiting = s.scalar(
            select(func.count()).where(
                Message.campaign_id == campaign_id,
                Message.status.in_(("queued", "sending", "retrying")),
            )
        )
        campaign = s.get_one(Campaign, campaign_id)
        return campaign.status, campaign.completed_at, waiting or 0


async def test_completed_in_the_same_commit_as_its_last_outcome(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, alice_actor, server)
    campaign_id = form_letter(ctx, alice_actor, alias_id, 40)
    seen: list[Snapshot] = []

    def settled() -> bool:
        seen.append(snapshot(ctx, campaign_id))
        return seen[-1][2] == 0

    async with running_worker(ctx):
        await wait_for(settled)

    # The first view with nothing left already shows the letter completed: no reader
    # (no GET) was needed, and no commit left it "running" with nothing to send.
    status, completed_at, _ = seen[-1]
    assert status == "completed" and completed_at is not None
    assert all(st == "running" for st, _, waiting in seen[:-1] if waiting), seen
    assert len(server.recorder.messages) == 40


async def test_send_again_reopens_it_and_the_outcome_completes_it_again(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, alice_actor, server)
    campaign_id = form_letter(ctx, alice_actor, alias_id, 3)
    async with running_worker(ctx):
        await wait_for(lambda: snapshot(ctx, campaign_id)[0] == "completed")
    with ctx.db.write() as s:
        first = s.scalars(select(Message).where(Message.campaign_id == campaign_id)).first()
        assert first is not None
        first.status = "unknown"  # as if the link broke after the data went out
        mid = first.id
        recount(s, campaign_id)
    with ctx.db.write() as s:
        message_service.resend(s, alice_actor, mid)
    assert snapshot(ctx, campaign_id)[:1] == ("running",)

    async with running_worker(ctx):
        await wait_for(lambda: snapshot(ctx, campaign_id)[2] == 0)
    status, completed_at, _ = snapshot(ctx, campaign_id)
    assert status == "completed" and completed_at is not None
    assert len(server.recorder.messages) == 4


async def test_resuming_a_letter_whose_last_messages_settled_while_paused_completes_it(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    alias_id = make_alias(ctx, alice_actor, await smtpd("none", pipelining=True))
    campaign_id = form_letter(ctx, alice_actor, alias_id, 2)
    with ctx.db.write() as s:
        pause_campaign(s, alice_actor, campaign_id)
        # The batch in flight when it was paused went out meanwhile.
        s.execute(update(Message).where(Message.campaign_id == campaign_id).values(status="sent"))
        recount(s, campaign_id)
    assert snapshot(ctx, campaign_id)[0] == "paused"
    with ctx.db.write() as s:
        out = campaign_out(s, resume_campaign(s, alice_actor, campaign_id))
    assert out.status == "completed"
    assert snapshot(ctx, campaign_id)[0] == "completed"


async def test_several_letters_finishing_in_one_commit_are_all_completed(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    # The worker records the outcomes of many lanes in one commit: the last messages of
    # several form letters settle together, and every one of them is completed (one
    # statement for all, which once failed and sent the whole group commit one by one).
    server = await smtpd("none", pipelining=True)
    aliases = [make_alias(ctx, alice_actor, server, name=f"Work{k}") for k in range(3)]
    letters = [form_letter(ctx, alice_actor, alias_id, 2) for alias_id in aliases]
    with ctx.db.write() as s:
        s.execute(update(Message).where(Message.campaign_id.in_(letters)).values(status="sent"))
        for campaign_id in letters:
            recount(s, campaign_id)
        complete_campaigns(s, letters, utcnow())
    assert [snapshot(ctx, c)[0] for c in letters] == ["completed"] * 3
