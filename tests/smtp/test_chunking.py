"""CHUNKING (RFC 3030): with a server that offers it (Postfix) the data goes as ``BDAT
<size> LAST`` with the exact bytes, pipelined with MAIL/RCPT when PIPELINING is offered
too, and arrives intact; a server without it (aiosmtpd) gets DATA and dot-stuffing."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from pydantic import SecretStr

from sendas.errors import ReplyError
from sendas.smtp import Envelope, SmtpEndpoint, SmtpSession, SubmitResult
from sendas.smtp.io import SmtpIO
from tests.servers.smtpd import USER, SmtpdFactory


def tricky_message(sender: str, tag: str, long_line: int = 1500) -> bytes:
    """Lines starting with dots, a lone dot, a long line (past the 998-octet limit by
    default: BDAT carries it as it is), 8-bit text."""
    lines = [
        f"X-Test-Start: {tag}",
        f"From: <{sender}>",
        "To: <someone@example.com>",
        f"Subject: chunking {tag}",
        "Date: Wed, 02 Dec 2026 06:00:00 +0000",
        f"Message-ID: <{tag}@example.test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        ".a line starting with a dot",
        "..two dots",
        ".",
        "x" * long_line,
        "Grüße, naïve café — ünïcödé",
        ". trailing",
    ]
    return "\r\n".join(lines).encode("utf-8") + b"\r\n"


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every byte string the client hands to the socket (seen before TLS encrypts it)."""
    sent: list[bytes] = []
    real_send = SmtpIO.send

    def send(self: SmtpIO, data: bytes, step: str) -> None:
        sent.append(data)
        real_send(self, data, step)

    monkeypatch.setattr(SmtpIO, "send", send)
    return sent


@pytest.mark.parametrize("pipelining", [True, False])
async def test_bdat_with_postfix_arrives_byte_identical(
    postfix_server: Any, wire: list[bytes], pipelining: bool
) -> None:
    pf = postfix_server
    endpoint = SmtpEndpoint(
        host=pf.host, port=pf.port, tls="starttls", username=pf.username,
        password=SecretStr(pf.password), ca_bundle_pem=pf.ca_pem, timeout=10.0,
    )  # fmt: skip
    tags = [f"bdat-{secrets.token_hex(6)}-{i}" for i in range(3)]
    raws = [tricky_message(pf.from_address, tag) for tag in tags]
    async with SmtpSession(endpoint) as session:
        assert "CHUNKING" in session.extensions
        if not pipelining:
            session.extensions.pop("PIPELINING", None)  # the lock-step path
        results = await session.submit_many(
            [Envelope(pf.from_address, ["someone@example.com"], raw) for raw in raws]
        )
    assert all(isinstance(r, SubmitResult) and r.delivered for r in results), results
    written = b"".join(wire)
    assert written.count(b"BDAT %d LAST\r\n" % len(raws[0])) == 3
    assert b"DATA\r\n" not in written
    if pipelining:  # a message's MAIL, RCPT and BDAT went in one write
        assert any(b"MAIL FROM:" in w and b"BDAT " in w for w in wire)
    for tag, raw in zip(tags, raws, strict=True):
        start = f"X-Test-Start: {tag}\n".encode()
        found = pf.wait_for(lambda m, s=start: s in m)
        assert len(found) == 1, pf.log_tail()
        # Postfix prepends its trace headers and stores LF line ends; the rest is ours.
        stored = found[0]
        assert stored[stored.index(start) :] == raw.replace(b"\r\n", b"\n")


async def test_server_without_chunking_gets_data(smtpd: SmtpdFactory, wire: list[bytes]) -> None:
    server = await smtpd("none", pipelining=True)
    raw = tricky_message(USER, "plain-data", long_line=990)  # aiosmtpd refuses > 998
    async with SmtpSession(server.endpoint()) as session:
        assert "CHUNKING" not in session.extensions
        [result] = await session.submit_many([Envelope(USER, ["r@example.test"], raw)])
    assert isinstance(result, SubmitResult) and result.delivered
    assert server.recorder.lines_starting(b"DATA") and not server.recorder.lines_starting(b"BDAT")
    assert b"\r\n..a line starting with a dot\r\n" in b"".join(wire)  # dot-stuffed
    assert server.recorder.messages[0].data == raw


async def test_bdat_refused_sender_in_the_window_leaves_the_others_in_step(
    postfix_server: Any,
) -> None:
    """Postfix refuses a sender the account does not own (553): that message fails alone,
    the ones written before and after it in the same window are delivered."""
    pf = postfix_server
    endpoint = SmtpEndpoint(
        host=pf.host, port=pf.port, tls="starttls", username=pf.username,
        password=SecretStr(pf.password), ca_bundle_pem=pf.ca_pem, timeout=10.0,
    )  # fmt: skip
    tags = [f"bdat-mixed-{secrets.token_hex(6)}-{i}" for i in range(3)]
    senders = [pf.from_address, "someone-else@example.com", pf.from_address]
    batch = [
        Envelope(sender, ["someone@example.com"], tricky_message(sender, tag))
        for sender, tag in zip(senders, tags, strict=True)
    ]
    async with SmtpSession(endpoint) as session:
        results = await session.submit_many(batch)
    first, refused, last = results
    assert isinstance(first, SubmitResult) and first.delivered
    # Refused at MAIL FROM or (Postfix's sender-login check) at RCPT TO.
    if isinstance(refused, SubmitResult):
        assert not refused.delivered
        assert [code for code, _, _ in refused.rejected.values()] == [553]
    else:
        assert isinstance(refused, ReplyError) and refused.code == 553, refused
    assert isinstance(last, SubmitResult) and last.delivered
    for tag in (tags[0], tags[2]):
        assert pf.wait_for(lambda m, t=tag: f"X-Test-Start: {t}\n".encode() in m)
