"""Failure handling by reply (DESIGN.md promise 5), against a fault-injecting aiosmtpd."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import SecretStr

from sendas.context import AppContext
from sendas.db.models import Alias, Lane, utcnow
from sendas.schemas import AliasPatch
from sendas.services import aliases as alias_service
from sendas.services import messages as message_service
from sendas.services.common import Actor
from tests.outbox.conftest import (
    all_final,
    make_alias,
    message,
    message_id_of,
    queue,
    received_ids,
    running_worker,
    statuses,
    wait_for,
)
from tests.servers.smtpd import DROP, USER, Received, SmtpdFactory, SmtpdServer


def accepted_ids(server: SmtpdServer, replies: dict[str, Any]) -> list[str]:
    """Install a DATA_END rule; return the list of Message-IDs the server accepted."""
    accepted: list[str] = []
    decide = replies.get("DATA_END")

    def on_end(received: Received) -> Any:
        reply = decide(received) if callable(decide) else decide
        if reply is None:
            accepted.append(message_id_of(received.data))
        return reply

    server.recorder.script["DATA_END"] = on_end
    return accepted


def lane(ctx: AppContext, alias_id: int) -> Lane:
    with ctx.db.read() as s:
        row = s.get(Lane, f"alias:{alias_id}")
        return row if row is not None else Lane(needs_attention=False)


async def test_4xx_is_retried_with_backoff_then_sent(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    refusals = {"left": 2}

    def end(received: Received) -> str | None:
        if refusals["left"]:
            refusals["left"] -= 1
            return "451 4.3.0 Temporary local problem, try again"
        return None

    accepted = accepted_ids(server, {"DATA_END": end})
    alias_id = make_alias(ctx, alice_actor, server)
    (mid,) = queue(ctx, alice_actor, alias_id, 1)

    async with running_worker(ctx):
        await wait_for(all_final(ctx, [mid]))

    m = message(ctx, mid)
    assert m.status == "sent" and m.attempts == 3  # two refused, one accepted
    assert accepted == [m.message_id]
    assert received_ids(server.recorder)[m.message_id] == 3  # two refused, one accepted


async def test_4xx_until_max_attempts_ends_failed(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    accepted = accepted_ids(server, {"DATA_END": "451 4.3.0 Temporary local problem"})
    alias_id = make_alias(ctx, alice_actor, server)
    (mid,) = queue(ctx, alice_actor, alias_id, 1)

    async with running_worker(ctx):
        await wait_for(all_final(ctx, [mid]))

    m = message(ctx, mid)
    assert m.status == "failed" and m.attempts == 6
    assert m.server_reply == "451 4.3.0 Temporary local problem" and m.hint
    assert accepted == [] and len(server.recorder.messages) == 6


async def test_5xx_fails_only_the_refused_recipients(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    server.recorder.script["RCPT"] = lambda arg: (
        "550 5.1.1 <bad@example.org>: Recipient address rejected" if "bad@" in (arg or "") else None
    )
    alias_id = make_alias(ctx, alice_actor, server)
    (mixed,) = queue(ctx, alice_actor, alias_id, 1, to=["good@example.org", "bad@example.org"])
    (only_bad,) = queue(ctx, alice_actor, alias_id, 1, to=["bad@example.org"])

    async with running_worker(ctx):
        await wait_for(all_final(ctx, [mixed, only_bad]))

    m = message(ctx, mixed)
    assert m.status == "sent"
    assert m.recipient_results is not None
    assert m.recipient_results["good@example.org"]["status"] == "sent"
    bad = m.recipient_results["bad@example.org"]
    assert bad["status"] == "failed" and bad["code"] == 550 and "rejected" in bad["reply"]
    assert bad["hint"]
    f = message(ctx, only_bad)
    assert f.status == "failed" and f.error_step == "rcpt_to" and f.hint
    assert f.server_reply is not None and f.server_reply.startswith("550 5.1.1")
    assert [r.rcpt_tos for r in server.recorder.messages] == [["good@example.org"]]


async def test_421_and_disconnect_mid_session_reconnects_and_sends_each_once(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    mails = {"n": 0}

    def on_mail(arg: str | None) -> str | None:
        mails["n"] += 1
        if mails["n"] == 6:
            protocol = server.recorder.protocols[-1]
            transport = protocol.transport
            assert transport is not None
            asyncio.get_running_loop().call_later(0.01, transport.close)
            return "421 4.3.2 Service shutting down, closing transmission channel"
        return None

    server.recorder.script["MAIL"] = on_mail
    accepted = accepted_ids(server, {})
    alias_id = make_alias(ctx, alice_actor, server)
    ids = queue(ctx, alice_actor, alias_id, 20)

    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids))

    assert set(statuses(ctx, ids).values()) == {"sent"}
    assert sorted(accepted) == sorted(message(ctx, i).message_id for i in ids)
    assert server.recorder.connections >= 2


async def test_535_after_n_messages_flags_the_alias_and_keeps_the_queue(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    state = {"accepted": 0}

    def on_mail(arg: str | None) -> str | None:
        if state["accepted"] >= 3:
            server.recorder.users = {}  # the password was changed at the provider
            return "535 5.7.8 Username and Password not accepted"
        return None

    def on_end(received: Received) -> None:
        state["accepted"] += 1

    server.recorder.script["MAIL"] = on_mail
    accepted = accepted_ids(server, {"DATA_END": on_end})
    alias_id = make_alias(ctx, alice_actor, server)
    ids = queue(ctx, alice_actor, alias_id, 10)

    async with running_worker(ctx):
        await wait_for(lambda: lane(ctx, alias_id).needs_attention)
        await asyncio.sleep(0.3)  # the lane stays paused: nothing more is tried
        assert len(accepted) == 3
        with ctx.db.read() as s:
            assert s.get_one(Alias, alias_id).needs_reauth
        now = statuses(ctx, ids)
        assert sorted(now.values()) == ["queued"] * 7 + ["sent"] * 3  # nothing failed
        assert lane(ctx, alias_id).paused_reason

        # The owner enters the new password: the queue resumes by itself.
        server.recorder.users = {USER: "new password 123"}
        server.recorder.script.pop("MAIL")
        with ctx.db.write() as s:
            alias_service.update_alias(
                s, alice_actor, alias_id,
                AliasPatch(smtp_password=SecretStr("new password 123")), ctx.secrets,
            )  # fmt: skip
        await wait_for(all_final(ctx, ids))

    assert set(statuses(ctx, ids).values()) == {"sent"}
    assert sorted(accepted) == sorted(message(ctx, i).message_id for i in ids)
    assert not lane(ctx, alias_id).needs_attention


async def test_rate_limit_pauses_the_lane_then_resumes_without_burning_anyone(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=False)
    state = {"mails": 0}

    def on_mail(arg: str | None) -> str | None:
        state["mails"] += 1
        if state["mails"] == 3:
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded, try again in 1 s"
        return None

    server.recorder.script["MAIL"] = on_mail
    accepted = accepted_ids(server, {})
    alias_id = make_alias(ctx, alice_actor, server)
    ids = queue(ctx, alice_actor, alias_id, 5)

    async with running_worker(ctx):
        await wait_for(lambda: lane(ctx, alias_id).paused_until is not None)
        paused = lane(ctx, alias_id)
        assert paused.paused_reason and "Throttling" in paused.paused_reason
        assert paused.paused_until is not None
        assert timedelta(0) < paused.paused_until - utcnow() <= timedelta(seconds=1.1)
        assert "failed" not in statuses(ctx, ids).values()
        await wait_for(all_final(ctx, ids))

    assert set(statuses(ctx, ids).values()) == {"sent"}
    # The throttled submission is not an attempt (a pause burns nothing); the one that
    # went through is.
    assert all(message(ctx, i).attempts == 1 for i in ids)
    assert sorted(accepted) == sorted(message(ctx, i).message_id for i in ids)


async def test_daily_quota_pauses_the_lane_for_hours(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    server.recorder.script["MAIL"] = "550 5.4.5 Daily user sending quota exceeded."
    alias_id = make_alias(ctx, alice_actor, server)
    ids = queue(ctx, alice_actor, alias_id, 3)

    async with running_worker(ctx):
        await wait_for(lambda: lane(ctx, alias_id).paused_until is not None)
        await asyncio.sleep(0.2)

    paused = lane(ctx, alias_id)
    assert paused.paused_until is not None and paused.paused_until - utcnow() > timedelta(hours=3)
    assert set(statuses(ctx, ids).values()) == {"queued"}  # no recipient burned
    m = message(ctx, ids[0])
    assert m.server_reply is not None and "5.4.5" in m.server_reply and m.attempts == 0
    assert len(server.recorder.lines_starting(b"MAIL")) == 3  # one pipelined batch, then pause


async def test_link_broken_after_data_is_unknown_and_never_resent_by_itself(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none", pipelining=True)
    drops = {"left": 2}

    def end(received: Received) -> str | None:
        target = b"Subject: Hello 3" in received.data or b"Subject: Hello 7" in received.data
        if target and drops["left"]:
            drops["left"] -= 1
            return DROP
        return None

    accepted = accepted_ids(server, {"DATA_END": end})
    alias_id = make_alias(ctx, alice_actor, server)
    ids = queue(ctx, alice_actor, alias_id, 10)

    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids))
        await asyncio.sleep(0.3)  # give a worker every chance to (wrongly) resend
        st = statuses(ctx, ids)
        unknown = [i for i in ids if st[i] == "unknown"]
        assert unknown == [ids[3], ids[7]]
        assert all(st[i] == "sent" for i in ids if i not in unknown)
        counts = received_ids(server.recorder)
        assert all(n == 1 for n in counts.values()) and len(counts) == 10
        u = message(ctx, ids[3])
        assert u.error_step == "data" and u.hint and "send again" in u.hint

        # The owner decides: send the first again, mark the second as sent.
        with ctx.db.write() as s:
            message_service.resend(s, alice_actor, ids[3])
            message_service.mark_sent(s, alice_actor, ids[7])
        await wait_for(lambda: statuses(ctx, [ids[3]])[ids[3]] == "sent")

    counts = received_ids(server.recorder)
    assert counts[message(ctx, ids[3]).message_id] == 2  # the owner's choice, same Message-ID
    assert counts[message(ctx, ids[7]).message_id] == 1
    assert message(ctx, ids[7]).status == "sent"
    assert sorted(accepted) == sorted(message(ctx, i).message_id for i in ids if i != ids[7])
