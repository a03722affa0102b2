"""A server refusing the sign-in of a send is an audit event naming the alias and the
server, never the password (issue 11, item 1)."""

from __future__ import annotations

from sqlalchemy import select

from sendas.context import AppContext
from sendas.db.models import Alias, AuditEvent
from sendas.services.common import Actor
from tests.outbox.conftest import make_alias, queue, running_worker, statuses, wait_for
from tests.servers.smtpd import PASSWORD, SmtpdFactory


def refusals(ctx: AppContext) -> list[AuditEvent]:
    with ctx.db.read() as s:
        q = select(AuditEvent).where(AuditEvent.action == "alias.auth_failed")
        return list(s.scalars(q))


async def test_a_refused_sign_in_while_sending_is_recorded(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none")
    server.recorder.users = {}  # the password was changed at the provider
    alias_id = make_alias(ctx, alice_actor, server)
    ids = queue(ctx, alice_actor, alias_id, 1)
    async with running_worker(ctx):
        await wait_for(lambda: bool(refusals(ctx)))
    (event,) = refusals(ctx)
    assert event.target_type == "alias" and event.target_id == alias_id
    assert event.owner_id == alice_actor.id and event.actor_id is None
    assert event.detail == {"server": f"127.0.0.1:{server.port}", "during": "send", "step": "auth"}
    assert PASSWORD not in repr(event.detail)
    assert set(statuses(ctx, ids).values()) == {"queued"}  # nothing burned
    with ctx.db.read() as s:
        assert s.get_one(Alias, alias_id).needs_reauth
