"""A disabled user's queued mail waits: not sent while they are disabled, not lost, sent
once they are enabled again (their lanes are held, services.accounts)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sendas.context import AppContext
from sendas.db.models import Lane
from sendas.outbox.lanes import alias_lane, lane_pause, pause_lane, release_held
from sendas.schemas import UserPatch
from sendas.services import accounts
from sendas.services.common import OPERATOR, Actor
from tests.outbox.conftest import (
    FAST,
    all_final,
    make_alias,
    queue,
    received_ids,
    running_worker,
    statuses,
    wait_for,
)
from tests.servers.smtpd import SmtpdFactory


def set_disabled(ctx: AppContext, user_id: int, disabled: bool) -> None:
    with ctx.db.write() as s:
        accounts.update_user(s, OPERATOR, user_id, UserPatch(disabled=disabled))


async def test_a_disabled_users_mail_waits_and_goes_out_when_enabled(
    ctx: AppContext, alice_actor: Actor, bob: object, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, alice_actor, server)
    held = queue(ctx, alice_actor, alias_id, 3, to=["held@example.org"])
    set_disabled(ctx, alice_actor.id, True)
    with ctx.db.read() as s:
        pause = lane_pause(s, alias_id, datetime.now(UTC))
        assert pause is not None and pause.reason == accounts.OWNER_DISABLED

    bob_actor = Actor(bob.id, bob.email, False)  # type: ignore[attr-defined]
    bob_alias = make_alias(ctx, bob_actor, server, name="Bobs")
    sent = queue(ctx, bob_actor, bob_alias, 2, to=["other@example.org"])
    async with running_worker(ctx):
        await wait_for(all_final(ctx, sent))  # the worker ran and saw alice's lane too
        await asyncio.sleep(10 * FAST.poll_interval)
        assert set(statuses(ctx, held).values()) == {"queued"}
        assert all("held@example.org" not in m.rcpt_tos for m in server.recorder.messages)

        set_disabled(ctx, alice_actor.id, False)
        await wait_for(all_final(ctx, held))

    assert set(statuses(ctx, held).values()) == {"sent"}
    assert len(received_ids(server.recorder)) == 5
    with ctx.db.read() as s:
        lane = s.get(Lane, alias_lane(alias_id))
        assert lane is not None and lane.paused_reason is None


def test_enabling_keeps_a_pause_that_is_not_the_hold(ctx: AppContext, alice_actor: Actor) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    with ctx.db.write() as s:
        pause_lane(s, "alias:77", until, "daily quota")
        release_held(s, ["alias:77"])
    with ctx.db.read() as s:
        lane = s.get_one(Lane, "alias:77")
        assert lane.paused_until == until and lane.paused_reason == "daily quota"
