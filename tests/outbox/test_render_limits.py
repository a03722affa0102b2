"""Form letters render within limits in the worker: a recipient over its time limit is
retried (at send time that is load: it rendered in time when queued) and fails, with a
reason that says so, only after the last attempt; a template error fails at once; one
user's slow template does not hold up another user's letter (issue 11, item 2)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select, update

from sendas.context import AppContext
from sendas.db.models import Message, MessageBody, utcnow
from sendas.schemas import CampaignTemplatesIn, RecipientIn
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.recipients import json_rows
from sendas.services.common import Actor
from tests.conftest import Person
from tests.outbox.conftest import FAST, all_final, make_alias, message, running_worker, wait_for
from tests.servers.smtpd import SmtpdFactory

# 10^8 steps of nested loops for n=10000 (it runs into any limit), nothing for n=1.
SLOW_FOR_BIG_N = (
    "{% for i in range(n|int) %}{% for j in range(n|int) %}{% endfor %}{% endfor %}Hi {{ n }}\n"
)


def _letter(ctx: AppContext, actor: Actor, alias_id: int, count: int) -> list[int]:
    """A letter whose recipients all render at once; then the second one made slow, as a
    letter queued under a larger limit would be."""
    recipients = [RecipientIn(email=f"r{i}@example.org", fields={"n": "1"}) for i in range(count)]
    data = CampaignTemplatesIn(alias_id=alias_id, subject="Hi", text=SLOW_FOR_BIG_N)
    created = create_campaign(ctx.db, actor, data, json_rows(recipients), settings=ctx.settings)
    with ctx.db.write() as s:
        ids = list(
            s.scalars(
                select(Message.id).where(Message.campaign_id == created.id).order_by(Message.id)
            )
        )
        if count > 1:
            s.execute(
                update(MessageBody)
                .where(MessageBody.message_id == ids[1])
                .values(merge_fields={"n": "10000"})
            )
    return ids


def _set(ctx: AppContext, message_id: int, **values: object) -> None:
    """Change a message's row, and its body's merge fields (kept apart since 0012)."""
    fields = values.pop("merge_fields", None)
    with ctx.db.write() as s:
        if values:
            s.execute(update(Message).where(Message.id == message_id).values(**values))
        if fields is not None:
            s.execute(
                update(MessageBody)
                .where(MessageBody.message_id == message_id)
                .values(merge_fields=fields)
            )


async def test_a_recipient_over_the_time_limit_fails_saying_so_after_the_last_attempt(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    ids = _letter(ctx, alice_actor, make_alias(ctx, alice_actor, server), 3)
    ctx.settings.template_render_timeout = 0.5
    async with running_worker(ctx, replace(FAST, max_attempts=2)):
        await wait_for(all_final(ctx, ids), within=60)
    assert [message(ctx, i).status for i in ids] == ["sent", "failed", "sent"]
    failed = message(ctx, ids[1])
    assert failed.attempts == 2  # rendered twice, out of time both times
    reason = f"{failed.hint} {failed.server_reply}"
    assert "took longer than 0.5 s to render for this recipient" in reason
    assert len(server.recorder.messages) == 2


async def test_a_render_out_of_time_at_send_time_is_retried_not_failed(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    """The chaos bench's fault: under CPU starvation a trivial template ran past the limit
    and the recipient failed for good. Here the render is slow once, then fast again."""
    server = await smtpd("none", pipelining=True)
    ids = _letter(ctx, alice_actor, make_alias(ctx, alice_actor, server), 2)
    ctx.settings.template_render_timeout = 0.5
    slow_backoff = replace(FAST, backoff_base=3600.0, backoff_max=3600.0)
    async with running_worker(ctx, slow_backoff):
        await wait_for(lambda: message(ctx, ids[1]).status == "retrying", within=60)
        late = message(ctx, ids[1])
        assert late.attempts == 1
        assert "took longer than 0.5 s to render" in (late.hint or "")
        # The machine is not busy any more: the next attempt renders in time.
        _set(ctx, ids[1], merge_fields={"n": "1"}, next_attempt_at=utcnow() - timedelta(1))
        await wait_for(all_final(ctx, ids), within=60)
    assert [message(ctx, i).status for i in ids] == ["sent", "sent"]
    assert message(ctx, ids[1]).attempts == 2
    assert sorted(m.rcpt_tos[0] for m in server.recorder.messages) == [
        "r0@example.org",
        "r1@example.org",
    ]


async def test_a_template_error_at_send_time_still_fails_at_once(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    ids = _letter(ctx, alice_actor, make_alias(ctx, alice_actor, server), 2)
    _set(ctx, ids[1], merge_fields={})  # its field is gone: an undefined variable
    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids), within=60)
    assert [message(ctx, i).status for i in ids] == ["sent", "failed"]
    failed = message(ctx, ids[1])
    assert failed.attempts == 0
    assert "could not be rendered for this recipient" in (failed.hint or "")
    assert "n" in (failed.hint or "")


async def test_a_slow_template_does_not_hold_up_another_users_letter(
    ctx: AppContext, alice_actor: Actor, bob: Person, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    bob_actor = Actor(bob.id, bob.email, False)
    slow = _letter(ctx, alice_actor, make_alias(ctx, alice_actor, server, name="Alice"), 2)
    ctx.settings.template_render_timeout = 60.0  # Alice's render runs on while Bob's goes
    async with running_worker(ctx):
        # Alice's letter is claimed (and its render started) before Bob's is queued.
        await wait_for(lambda: message(ctx, slow[0]).lease_expires_at is not None)
        [bobs] = _letter(ctx, bob_actor, make_alias(ctx, bob_actor, server, name="Bob"), 1)
        await wait_for(lambda: message(ctx, bobs).status == "sent", within=30)
        # Bob's letter was delivered while Alice's second recipient was still rendering.
        assert message(ctx, slow[1]).status in ("queued", "sending")
        assert [m.rcpt_tos for m in server.recorder.messages] == [["r0@example.org"]]
        assert server.recorder.messages[0].mail_from == "bob@example.test"
