"""A form letter's messages, rendered and packed in the render processes, go out as the
bytes that are stored (packed at rest), and read back unchanged."""

from __future__ import annotations

from sendas.context import AppContext
from sendas.db.models import Message
from sendas.db.packing import ZSTD
from sendas.services.common import Actor
from tests.db.test_packing import stored
from tests.outbox.conftest import FAST, all_final, make_alias, message, running_worker, wait_for
from tests.outbox.test_crash import form_letter
from tests.servers.smtpd import SmtpdFactory


async def test_rendered_letters_are_stored_packed_and_sent_as_stored(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    assert FAST.render_processes > 0  # packed in another process, not the worker
    server = await smtpd("none", pipelining=True)
    form_letter(ctx, alice_actor, make_alias(ctx, alice_actor, server), 30)
    with ctx.db.read() as s:
        ids = [i for (i,) in s.query(Message.id).order_by(Message.id)]

    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids))

    sent = {m.data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0]: m.data
            for m in server.recorder.messages}  # fmt: skip
    assert len(sent) == 30
    for i in ids:
        m = message(ctx, i)
        assert m.status == "sent" and m.raw is not None
        assert sent[m.message_id.encode()] == m.raw
        assert stored(ctx.db.engine, i)[:1] == ZSTD
