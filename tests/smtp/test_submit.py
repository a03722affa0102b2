"""submit_many: lock-step and RFC 2920 pipelining, per-message outcomes, broken links and
the start gate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from sendas.errors import DeliveryUnknown, MailConnectionError, MailTimeoutError, ReplyError
from sendas.smtp import Envelope, ReplyKind, SmtpSession, SubmitResult
from tests.servers.smtpd import HANG, USER, Received, SmtpdFactory


def envelopes(n: int) -> list[Envelope]:
    return [
        Envelope(USER, [f"r{i}@example.test"], f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
        for i in range(n)
    ]


def by_subject(replies: dict[int, str]) -> object:
    def reply(received: Received) -> str | None:
        number = int(received.data.split(b"Subject: ")[1].split(b"\r\n")[0])
        return replies.get(number)

    return reply


async def test_pipelined_batch_has_one_outcome_per_message(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit", pipelining=True)
    server.recorder.script["DATA_END"] = by_subject(
        {2: "451 4.3.0 Temporary local problem", 3: "554 5.7.1 Message rejected as spam"}
    )
    batch = envelopes(7)
    batch[5] = Envelope(USER, ["r5@example.test", "gone@example.test"], batch[5].data)
    server.recorder.script["RCPT"] = lambda arg: (
        "550 5.1.1 no such user" if ("r4@" in arg or "gone@" in arg) else None
    )
    async with SmtpSession(server.endpoint()) as session:
        assert session.supports_pipelining
        results = await session.submit_many(batch)
        assert session.usable
    assert [isinstance(r, SubmitResult) and r.delivered for r in results] == [
        True,
        True,
        False,
        False,
        False,
        True,
        True,
    ]
    transient, spam, nobody, partial = results[2], results[3], results[4], results[5]
    assert isinstance(transient, SubmitResult) and transient.kind is ReplyKind.TRANSIENT
    assert isinstance(spam, SubmitResult) and spam.kind is ReplyKind.PERMANENT
    assert spam.final_reply == (554, "5.7.1 Message rejected as spam")
    assert isinstance(nobody, SubmitResult) and nobody.final_reply is None
    assert nobody.rejected["r4@example.test"][0] == 550
    assert isinstance(partial, SubmitResult)
    assert partial.accepted == ["r5@example.test"] and "gone@example.test" in partial.rejected
    # what the server stored: every message but the one with no valid recipient
    subjects = [m.data.split(b"\r\n")[0] for m in server.recorder.messages]
    assert subjects == [b"Subject: %d" % i for i in (0, 1, 2, 3, 5, 6)]
    assert server.recorder.messages[4].rcpt_tos == ["r5@example.test"]
    # the transaction left open by the refused recipients was reset before the next MAIL
    assert server.recorder.lines_starting(b"RSET") == [b"RSET"]
    # pipelined: MAIL arrived together with its RCPT/DATA, and the next MAIL rode behind
    # the end of data (one round trip per message)
    assert all(server.recorder.waiting_after(b"MAIL"))
    assert all(m.next_command_waiting for m in server.recorder.messages[:-1])


async def test_reply_4xx_and_5xx_to_mail_from_in_the_middle(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit", pipelining=True)
    seen = {"n": 0}

    def mail(arg: str) -> str | None:
        seen["n"] += 1
        return {2: "451 4.7.1 Greylisted, try later", 3: "550 5.7.60 not allowed to send as"}.get(
            seen["n"]
        )

    server.recorder.script["MAIL"] = mail
    async with SmtpSession(server.endpoint()) as session:
        results = await session.submit_many(envelopes(4))
    first, greylisted, denied, last = results
    assert isinstance(first, SubmitResult) and first.delivered
    assert isinstance(greylisted, ReplyError) and greylisted.kind == ReplyKind.TRANSIENT
    assert greylisted.step == "mail_from" and greylisted.code == 451
    assert isinstance(denied, ReplyError) and denied.kind == ReplyKind.PERMANENT
    assert "Send As" in denied.hint
    assert isinstance(last, SubmitResult) and last.delivered
    assert len(server.recorder.messages) == 2


async def test_lockstep_without_pipelining(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit", pipelining=False)
    async with SmtpSession(server.endpoint()) as session:
        assert not session.supports_pipelining
        results = await session.submit_many(envelopes(3))
    assert all(isinstance(r, SubmitResult) and r.delivered for r in results)
    assert not any(server.recorder.waiting_after(b"MAIL"))
    assert len(server.recorder.messages) == 3


@pytest.mark.parametrize("pipelining", [True, False])
async def test_link_dropped_after_data_is_delivery_unknown(
    smtpd: SmtpdFactory, pipelining: bool
) -> None:
    server = await smtpd("implicit", pipelining=pipelining)
    server.recorder.script["DATA_END"] = by_subject({1: "<drop the connection>"})
    async with SmtpSession(server.endpoint()) as session:
        results = await session.submit_many(envelopes(3))
        assert not session.usable
    sent, unknown, not_sent = results
    assert isinstance(sent, SubmitResult) and sent.delivered
    assert isinstance(unknown, DeliveryUnknown) and unknown.step == "data"
    assert isinstance(not_sent, MailConnectionError)
    assert not isinstance(not_sent, DeliveryUnknown)
    # the server did get the data of the unknown message: it may well be delivered
    assert [m.dropped for m in server.recorder.messages] == [False, True]


async def test_single_submit_raises_delivery_unknown(smtpd: SmtpdFactory) -> None:
    server = await smtpd("starttls")
    server.recorder.script["DATA_END"] = "<drop the connection>"
    async with SmtpSession(server.endpoint()) as session:
        with pytest.raises(DeliveryUnknown):
            await session.submit(USER, ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
        with pytest.raises(MailConnectionError):
            await session.submit(USER, ["bob@example.test"], b"Subject: y\r\n\r\ny\r\n")


async def test_421_after_data_stops_the_batch(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit", pipelining=True)
    server.recorder.script["DATA_END"] = by_subject(
        {1: "421 4.7.0 Try again later, closing connection."}
    )
    async with SmtpSession(server.endpoint()) as session:
        results = await session.submit_many(envelopes(4))
        assert not session.usable
    first, limited, *rest = results
    assert isinstance(first, SubmitResult) and first.delivered
    assert isinstance(limited, SubmitResult) and not limited.delivered
    assert limited.kind is ReplyKind.RATE_LIMIT
    assert all(isinstance(r, MailConnectionError) for r in rest)


async def test_smtputf8_problem_fails_only_its_message(smtpd: SmtpdFactory) -> None:
    from sendas.errors import SmtpUtf8Required

    server = await smtpd("implicit", pipelining=True)
    batch = envelopes(3)
    batch[1] = Envelope(USER, ["jürgen@example.test"], batch[1].data)
    async with SmtpSession(server.endpoint()) as session:
        results = await session.submit_many(batch)
    assert isinstance(results[1], SmtpUtf8Required)
    assert [m.rcpt_tos for m in server.recorder.messages] == [
        ["r0@example.test"],
        ["r2@example.test"],
    ]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_silence_after_data_times_out_as_delivery_unknown(
    smtpd: SmtpdFactory, pipelining: bool
) -> None:
    import time

    server = await smtpd("implicit", pipelining=pipelining)
    server.recorder.script["DATA_END"] = by_subject({1: HANG})
    async with SmtpSession(server.endpoint(timeout=0.5)) as session:
        started = time.monotonic()
        results = await session.submit_many(envelopes(3))
        waited = time.monotonic() - started
    assert 0.4 < waited < 2.0
    assert isinstance(results[0], SubmitResult) and results[0].delivered
    assert isinstance(results[1], DeliveryUnknown)
    assert isinstance(results[2], MailConnectionError)


async def test_silence_before_data_is_a_timeout_not_unknown(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit", pipelining=True)
    count = {"n": 0}

    def mail(arg: str) -> str | None:
        count["n"] += 1
        return HANG if count["n"] == 2 else None

    server.recorder.script["MAIL"] = mail
    async with SmtpSession(server.endpoint(timeout=0.5)) as session:
        results = await session.submit_many(envelopes(3))
    assert isinstance(results[0], SubmitResult) and results[0].delivered
    assert isinstance(results[1], MailTimeoutError) and results[1].step == "mail_from"
    assert isinstance(results[2], MailConnectionError)
    assert len(server.recorder.messages) == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_start_gate_opens_before_the_first_write(
    smtpd: SmtpdFactory, pipelining: bool
) -> None:
    server = await smtpd("implicit", pipelining=pipelining)
    seen_at_gate: list[list[bytes]] = []
    opened: list[float] = []

    async def gate() -> None:
        await asyncio.sleep(0.05)  # the server would have the commands by now
        seen_at_gate.append(server.recorder.lines_starting(b"MAIL"))
        opened.append(time.monotonic())

    batch = [*envelopes(2), Envelope(USER, [], b"no recipients\r\n")]
    async with SmtpSession(server.endpoint()) as session:
        results = await session.submit_many(batch, start_gate=gate)
        assert session.mail_sent_at is not None and session.mail_sent_at >= opened[0]
    assert seen_at_gate == [[]]  # awaited once, and nothing was written before it opened
    assert [isinstance(r, SubmitResult) and r.delivered for r in results[:2]] == [True, True]
    assert isinstance(results[2], ReplyError) and results[2].step == "rcpt_to"


async def test_no_start_gate_when_nothing_can_be_sent(smtpd: SmtpdFactory) -> None:
    server = await smtpd("implicit", pipelining=True)
    calls: list[None] = []

    async def gate() -> None:
        calls.append(None)

    async with SmtpSession(server.endpoint()) as session:
        (result,) = await session.submit_many([Envelope(USER, [], b"x\r\n")], start_gate=gate)
        assert session.mail_sent_at is None
    assert calls == [] and isinstance(result, ReplyError)


async def test_pipelined_354_after_refused_mail_keeps_replies_in_step(
    smtpd: SmtpdFactory,
) -> None:
    """A server that refuses MAIL yet answers DATA with 354 gets a lone "." (no body); the
    next message's replies are read in step (no RSET reply is expected: none was sent)."""
    server = await smtpd("implicit", pipelining=True)
    counts = {"MAIL": 0, "DATA": 0}

    def nth(command: str, n: int, reply: str) -> Callable[[str], str | None]:
        def rule(arg: str) -> str | None:
            counts[command] += 1
            return reply if counts[command] == n else None

        return rule

    server.recorder.script["MAIL"] = nth("MAIL", 2, "550 5.7.1 sender refused")
    server.recorder.script["DATA"] = nth("DATA", 2, "354 End data with <CR><LF>.<CR><LF>")
    async with SmtpSession(server.endpoint(timeout=2)) as session:
        results = await session.submit_many(envelopes(4))
    first, refused, third, fourth = results
    assert isinstance(refused, ReplyError) and refused.step == "mail_from"
    assert refused.code == 550
    assert all(isinstance(r, SubmitResult) and r.delivered for r in (first, third, fourth))
    assert [m.data.split(b"\r\n")[0] for m in server.recorder.messages] == [
        b"Subject: 0",
        b"Subject: 2",
        b"Subject: 3",
    ]
