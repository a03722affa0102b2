"""A form letter's messages, rendered and packed in the render processes (with their
letter's templates as a dictionary), go out as the bytes that are stored, and read back
unchanged."""

from __future__ import annotations

from sendas.context import AppContext
from sendas.db.models import Message
from sendas.db.packing import LETTER
from sendas.schemas import CampaignTemplatesIn, RecipientIn
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.recipients import json_rows
from sendas.services.common import Actor
from tests.db.test_packing import prose_message, stored
from tests.outbox.conftest import (
    FAST,
    all_final,
    make_alias,
    message_id_of,
    running_worker,
    wait_for,
)
from tests.servers.smtpd import Received, SmtpdFactory

TEXT = "Dear {{ first }},\n\n" + prose_message(7).decode().split("\r\n\r\n", 1)[1].strip()


def prose_letter(ctx: AppContext, actor: Actor, alias_id: int, count: int) -> list[int]:
    """A form letter of TEXT (about 5 KB of prose) to ``count`` recipients: its message ids."""
    recipients = [RecipientIn(email=f"r{i}@example.org", fields={"first": f"First{i}"})
                  for i in range(count)]  # fmt: skip
    data = CampaignTemplatesIn(alias_id=alias_id, subject="Hello {{ first }}", text=TEXT)
    create_campaign(ctx.db, actor, data, json_rows(recipients))
    with ctx.db.read() as s:
        return [i for (i,) in s.query(Message.id).order_by(Message.id)]


async def test_rendered_letters_are_stored_packed_and_sent_as_stored(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    assert FAST.render_processes > 0  # packed in another process, not the worker
    server = await smtpd("none", pipelining=True)
    ids = prose_letter(ctx, alice_actor, make_alias(ctx, alice_actor, server), 30)

    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids))

    sent = {message_id_of(m.data): m.data for m in server.recorder.messages}
    assert len(sent) == 30
    with ctx.db.read() as s:  # a letter's body is read with its letter: in a session
        for i in ids:
            m = s.get_one(Message, i)
            assert m.status == "sent" and m.raw is not None
            assert sent[m.message_id] == m.raw
            at_rest = stored(ctx.db.engine, i)
            # What the letter's messages share is in the dictionary, not in each row.
            assert at_rest[:1] == LETTER and len(at_rest) < len(m.raw) // 8


async def test_a_letter_refused_for_now_is_sent_again_byte_for_byte(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    """A retry is not rendered again: it reads the stored body back (with its letter's
    dictionary), so its Message-ID and Date are those of the first try."""
    server = await smtpd("none", pipelining=True)
    tries: dict[str, list[bytes]] = {}

    def end(received: Received) -> str | None:
        key = message_id_of(received.data)
        tries.setdefault(key, []).append(received.data)
        return "451 4.3.0 Temporary local problem" if len(tries[key]) == 1 else None

    server.recorder.script["DATA_END"] = end
    ids = prose_letter(ctx, alice_actor, make_alias(ctx, alice_actor, server), 3)

    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids))

    assert len(tries) == 3
    with ctx.db.read() as s:
        for i in ids:
            m = s.get_one(Message, i)
            assert m.status == "sent" and m.attempts == 2
            assert tries[m.message_id] == [m.raw, m.raw]
            assert stored(ctx.db.engine, i)[:1] == LETTER
