"""A bounce written by a real Postfix: the alias sends through it, the next server refuses
the recipient with 550, Postfix returns the message to the alias's address with its own
DSN, and that DSN, filed in the real Dovecot INBOX, marks the message and suppresses the
address."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.testclient import TestClient

from sendas.context import AppContext
from sendas.services.common import Actor
from tests.bounces.conftest import api_message, link_mailbox, suppressed, watch_round
from tests.conftest import Person
from tests.outbox.conftest import all_final, message, queue, running_worker, wait_for
from tests.servers.dovecot import DovecotServer
from tests.servers.postfix import relay_postfix, start_relay
from tests.servers.smtpd import SmtpdFactory

UNKNOWN = "nobody@example.org"


def refuse_unknown(arg: str | None) -> str | None:
    if arg and UNKNOWN in arg.lower():
        return f"550 5.1.1 <{UNKNOWN}>: Recipient address rejected: User unknown"
    return None


async def test_a_postfix_dsn_for_an_unknown_recipient_marks_and_suppresses(
    ctx: AppContext, client: TestClient, alice: Person, alice_actor: Actor,
    smtpd: SmtpdFactory, dovecot_server: DovecotServer,
) -> None:  # fmt: skip
    mx = await smtpd("none", script={"RCPT": refuse_unknown})
    postfix = relay_postfix()
    try:
        port = await asyncio.to_thread(start_relay, postfix, mx.port)
        box = link_mailbox(ctx, alice_actor, dovecot_server, port, credentials=False)
        [mid] = queue(ctx, alice_actor, box.alias_id, 1, to=[UNKNOWN], subject="Invoice")
        async with running_worker(ctx):
            await wait_for(all_final(ctx, [mid]))
        assert message(ctx, mid).status == "sent"  # Postfix accepted it

        def bounced_back() -> bool:
            return any(m.mail_from in ("", "<>") for m in mx.recorder.messages)

        try:
            await wait_for(bounced_back, within=60)
        except AssertionError:
            raise AssertionError(f"no bounce from Postfix:\n{postfix.log_tail()}") from None
    finally:
        await asyncio.to_thread(postfix.stop)

    [dsn] = [m for m in mx.recorder.messages if m.mail_from in ("", "<>")]
    assert dsn.rcpt_tos == [box.address]
    assert b"multipart/report" in dsn.data and b"MAILER-DAEMON" in dsn.data
    box.deliver(dsn.data)  # the receiving server files it in the sender's INBOX

    result = await watch_round(ctx, box.imap_account_id)
    assert result.bounced_messages == [mid]
    seen: dict[str, Any] = api_message(client, alice.headers, mid)
    assert seen["status"] == "bounced"
    assert "5.1.1" in seen["server_reply"] and "User unknown" in seen["server_reply"]
    assert seen["recipient_results"][UNKNOWN]["status_code"] == "5.1.1"
    assert list(suppressed(ctx, alice.id)) == [UNKNOWN]
    assert len(box.inbox()) == 1
