"""Parallel connections: a relay alias without delay uses up to ``max_connections``
connections at once, each with its own batches; a personal alias (the default, 1) and any
alias with a delay use one."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from sendas.context import AppContext
from sendas.db.models import Alias
from sendas.services.common import Actor
from tests.outbox.conftest import (
    all_final,
    make_alias,
    queue,
    received_ids,
    running_worker,
    statuses,
    wait_for,
)
from tests.servers.smtpd import Received, SmtpdFactory, SmtpdServer


async def send_all(ctx: AppContext, server: SmtpdServer, ids: list[int]) -> None:
    """Run a worker until ``ids`` are settled: every one sent, and received once."""
    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids), within=60)
    assert set(statuses(ctx, ids).values()) == {"sent"}
    counts = received_ids(server.recorder)
    assert len(counts) == len(ids) and set(counts.values()) == {1}


async def test_relay_alias_opens_its_five_connections_and_sends_each_message_once(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, alice_actor, server, max_connections=5)
    ids = queue(ctx, alice_actor, alias_id, 400)

    await send_all(ctx, server, ids)
    assert server.recorder.connections == 5
    assert server.recorder.most_open == 5


async def test_a_pool_whose_first_connection_runs_dry_lets_the_others_finish_their_claims(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    """A slow server: when the lane's first connection finds nothing left to claim, the
    other connections still hold claimed messages. They send them; the lane is not handed
    back with them given back, then taken and connected again for them."""
    server = await smtpd("none", pipelining=True)

    async def slowly(received: Received) -> None:
        await asyncio.sleep(0.005)

    server.recorder.script["DATA_END"] = slowly
    alias_id = make_alias(ctx, alice_actor, server, max_connections=3)
    ids = queue(ctx, alice_actor, alias_id, 600)

    await send_all(ctx, server, ids)
    assert server.recorder.connections == 3  # one pool, never opened again


async def test_personal_alias_uses_one_connection(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, alice_actor, server)  # max_connections left at its default
    ids = queue(ctx, alice_actor, alias_id, 200)

    await send_all(ctx, server, ids)
    assert server.recorder.connections == 1


async def test_with_a_delay_one_connection_keeps_the_pace(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    """Even if the stored value says 5 (the API refuses it with a delay), a lane with a
    delay sends over one connection."""
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, alice_actor, server, max_connections=5)
    with ctx.db.write() as s:
        s.execute(update(Alias).where(Alias.id == alias_id).values(delay_ms=10))
    ids = queue(ctx, alice_actor, alias_id, 30)

    await send_all(ctx, server, ids)
    assert server.recorder.connections == 1


async def test_a_server_that_limits_connections_shrinks_the_pool_without_pausing(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    """The server turns away every connection after the second (421 to EHLO): the lane
    goes on with the two it has, every message is sent once."""
    server = await smtpd("none", pipelining=True)
    greeted = 0

    def ehlo(arg: str | None) -> str | None:
        nonlocal greeted
        greeted += 1
        return None if greeted <= 2 else "421 4.7.0 Too many connections from your address"

    server.recorder.script["EHLO"] = ehlo
    alias_id = make_alias(ctx, alice_actor, server, max_connections=5)
    ids = queue(ctx, alice_actor, alias_id, 300)

    await send_all(ctx, server, ids)
    assert server.recorder.connections == 5  # two kept, three turned away once each
    assert greeted == 5
