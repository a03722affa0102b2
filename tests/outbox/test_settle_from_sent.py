"""Settling ``unknown`` messages from the mailbox, against a real Dovecot.

A "filing" SMTP server (tests/servers/filing.py) files every message it accepts in the
Dovecot account's Sent folder before it answers, as Gmail and Microsoft 365 do. A message
is left ``unknown`` the ways it happens: the server accepted the data and the connection
dropped before its reply, or a worker died after marking it ``sending`` (reaped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import update

from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Alias, Campaign, ImapAccount, Message, utcnow
from sendas.outbox.record import reap_expired
from sendas.outbox.settle_from_sent import CONFIRMED_IN_SENT, SentSettler, SettleConfig, _Picker
from sendas.schemas import AliasPatch, ImapCreate, MessageIn
from sendas.services import aliases as alias_service
from sendas.services import imap_accounts as imap_service
from sendas.services import messages as message_service
from sendas.services.campaigns.progress import campaign_out
from sendas.services.common import Actor
from tests.conftest import Person, make_actor
from tests.oauth.conftest import USER_EMAIL
from tests.oauth.test_imap_xoauth2 import signed_in_with_imap
from tests.oauth.test_web_flow import send, web
from tests.outbox.conftest import (
    FAST,
    make_alias,
    message,
    message_id_of,
    queue,
    received_ids,
    running_worker,
    sink_alias,
    wait_for,
)
from tests.outbox.test_campaign_completion import form_letter
from tests.outbox.test_claims import vm_steps
from tests.outbox.test_copy_to_sent import add_imap
from tests.servers.dovecot import DovecotAccount, DovecotOAuthFactory, DovecotServer
from tests.servers.filing import filing_script
from tests.servers.oauth_server import OAuthServerFactory
from tests.servers.smtpd import DROP, PASSWORD, Received, SmtpdFactory, SmtpdServer

__all__ = ["web"]  # the fixture, for the XOAUTH2 test

SENT = "Sent Items"  # the Sent folder of a Dovecot account laid out "special"
SETTLE_AFTER = 1.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        embedded_worker=False,
        smtp_timeout=3.0,
        settle_every_seconds=0.1,
        settle_after_seconds=SETTLE_AFTER,
    )


def direct_settler(
    ctx: AppContext, before_recording: Callable[[], None] | None = None
) -> SentSettler:
    """A settler driven by the test, pass by pass (no worker running). ``before_recording``
    runs between a pass's look in Sent and the recording of what it found."""
    calls = Counter[str]()

    async def run(fn: Any) -> Any:
        calls["run"] += 1
        if calls["run"] % 2 == 0 and before_recording is not None:
            await asyncio.to_thread(before_recording)

        def tx() -> Any:
            with ctx.db.write() as s:
                return fn(s)

        return await asyncio.to_thread(tx)

    cfg = SettleConfig(every_seconds=0.1, after_seconds=SETTLE_AFTER, timeout=5.0)
    return SentSettler(
        run, ctx.secrets, cfg, token_providers=None, outbound=ctx.settings.outbound_policy
    )


def due_now(ctx: AppContext, message_id: int) -> None:
    """Make the next check of ``message_id`` due (the settler spaces its checks out)."""
    with ctx.db.write() as s:
        s.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1), updated_at=Message.updated_at)
        )


def crashed_before_sending(ctx: AppContext, actor: Actor, alias_id: int) -> int:
    """A message a worker marked ``sending`` and then died with, before a byte of it went
    out: queued and claimed by "a dead worker" in one transaction (no live worker sees it
    queued); the next reap makes it ``unknown`` as after a SIGKILL."""
    with ctx.db.write() as s:
        body = MessageIn(alias_id=alias_id, to=["lost@example.org"], subject="Lost", text="x\n")
        mid = message_service.send_message(s, actor, body).id
        row = s.get_one(Message, mid)
        row.status = "sending"
        row.lease_owner = "dead-host:1:0000"
        row.lease_expires_at = utcnow() - timedelta(seconds=1)
    return mid


def account_flag(ctx: AppContext, imap_id: int) -> bool | None:
    """What the API shows (``GET /api/imap-accounts/{id}``): does the server file copies?"""
    with ctx.db.read() as s:
        return imap_service.imap_out(s.get_one(ImapAccount, imap_id)).files_sent_copy


async def reaped(ctx: AppContext, actor: Actor, alias_id: int, *, due: bool = True) -> int:
    """A message of ``alias_id`` left ``unknown`` by a worker that died while sending it
    (:func:`crashed_before_sending`, then reaped); with ``due``, past the settling time and
    due for its check."""
    lost = crashed_before_sending(ctx, actor, alias_id)
    with ctx.db.write() as s:
        assert reap_expired(s, utcnow()) == 1
    if due:
        await asyncio.sleep(SETTLE_AFTER)
        due_now(ctx, lost)
    return lost


@dataclass
class SentBox:
    """A Dovecot account laid out "special" (its Sent folder is :data:`SENT`), linked as the
    actor's IMAP account ``imap_id``."""

    ctx: AppContext
    actor: Actor
    dovecot: DovecotServer
    account: DovecotAccount
    imap_id: int

    def filing(self, *, then: Any = None) -> dict[str, Callable[[Received], Any]]:
        """The script of an SMTP server that files what it accepts in this Sent folder."""
        return filing_script(self.dovecot, self.account, SENT, then=then)

    def alias(self, server: SmtpdServer, *, mailbox_login: bool = False, **kw: Any) -> int:
        """An alias sending through ``server`` with this IMAP account; with
        ``mailbox_login``, its SMTP login is this mailbox (as at Gmail: the user name is
        the address; here in capitals, names compare case-insensitively), else the
        aiosmtpd fixture's user."""
        if mailbox_login:
            kw["smtp_username"] = self.account.username.upper()
            server.recorder.users[kw["smtp_username"]] = PASSWORD
        return make_alias(self.ctx, self.actor, server, imap_account_id=self.imap_id, **kw)

    def files_copies(self) -> bool | None:
        return account_flag(self.ctx, self.imap_id)

    def sent_ids(self) -> Counter[str]:
        return sent_ids(self.dovecot, self.account)


def link_sent_box(
    ctx: AppContext, actor: Actor, dovecot: DovecotServer, prefix: str, password: str | None = None
) -> SentBox:
    """A new Dovecot account linked as ``actor``'s IMAP account, with its own password or
    ``password``."""
    account = dovecot.add_account(prefix, layout="special")
    imap_id = add_imap(ctx, actor, dovecot, account, password or account.password)
    return SentBox(ctx, actor, dovecot, account, imap_id)


@pytest.fixture
def sent_box(
    ctx: AppContext, alice_actor: Actor, dovecot_server: DovecotServer
) -> Callable[..., SentBox]:
    """``sent_box(prefix, password=None)``: :func:`link_sent_box` for alice."""
    return functools.partial(link_sent_box, ctx, alice_actor, dovecot_server)


@pytest.fixture
def offline_alias(ctx: AppContext, alice_actor: Actor) -> tuple[int, int]:
    """(IMAP account, alias) of alice with no server behind them, the account learnt to
    file copies of its own."""
    data = ImapCreate(imap_server="127.0.0.1:993", tls="implicit", username="me@example.test",
                      password=SecretStr("pw"))  # fmt: skip
    with ctx.db.write() as s:
        imap_id = imap_service.create_imap_account(s, alice_actor, data, ctx.secrets).id
        s.get_one(ImapAccount, imap_id).files_sent_copy = True

    class Port:
        port = 2525

    alias_id = make_alias(ctx, alice_actor, Port(), imap_account_id=imap_id)  # type: ignore[arg-type]
    return imap_id, alias_id


def sent_ids(dovecot: Any, account: Any) -> Counter[str]:
    return Counter(message_id_of(m.raw) for m in dovecot.read_mailbox(account, SENT))


async def test_accepted_then_dropped_is_confirmed_sent_from_the_sent_folder(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    box = sent_box("confirm")
    # The server files the message, then drops the link instead of answering 250.
    server = await smtpd("none", script=box.filing(then=DROP))
    alias_id = box.alias(server)
    [mid] = queue(ctx, alice_actor, alias_id, 1)

    async with running_worker(ctx):
        await wait_for(lambda: message(ctx, mid).status == "sent")

    settled = message(ctx, mid)
    assert settled.hint == CONFIRMED_IN_SENT
    assert settled.sent_at is not None
    assert settled.sent_copy == "skipped" and SENT in (settled.sent_copy_detail or "")
    assert received_ids(server.recorder) == Counter({settled.message_id: 1})
    assert server.recorder.messages[0].dropped  # it never heard the 250
    assert box.sent_ids() == Counter({settled.message_id: 1})


async def test_never_accepted_goes_back_to_queued_and_is_delivered_once(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    box = sent_box("requeue")
    server = await smtpd("none", script=box.filing())
    alias_id = box.alias(server, mailbox_login=True)
    assert box.files_copies() is None
    [first] = queue(ctx, alice_actor, alias_id, 1, subject="First")

    async with running_worker(ctx):
        # The first send teaches sendas that this server files its own copy.
        await wait_for(lambda: message(ctx, first).sent_copy is not None)
        copied = message(ctx, first)
        assert copied.sent_copy == "skipped", copied.sent_copy_detail
        assert "filed its own copy" in (copied.sent_copy_detail or "")
        assert box.files_copies() is True

        lost = crashed_before_sending(ctx, alice_actor, alias_id)
        await wait_for(lambda: message(ctx, lost).sent_copy is not None, within=30)

    delivered = message(ctx, lost)
    assert delivered.status == "sent"
    assert delivered.hint != CONFIRMED_IN_SENT  # it was sent again, not found
    assert received_ids(server.recorder) == Counter({copied.message_id: 1, delivered.message_id: 1})
    # One copy each in Sent: the server's; ours were not appended.
    assert box.sent_ids() == Counter({copied.message_id: 1, delivered.message_id: 1})


async def test_server_that_does_not_file_copies_leaves_it_unknown_with_what_was_checked(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    box = sent_box("nofile")

    def drop_the_second(received: Received) -> str | None:
        return DROP if b"Subject: Second" in received.data else None

    server = await smtpd("none", script={"DATA_END": drop_the_second})
    alias_id = box.alias(server, mailbox_login=True)
    [first] = queue(ctx, alice_actor, alias_id, 1, subject="First")

    async with running_worker(ctx):
        await wait_for(lambda: message(ctx, first).sent_copy is not None)
        assert message(ctx, first).sent_copy == "appended"
        assert box.files_copies() is False  # no copy was there before ours
        [second] = queue(ctx, alice_actor, alias_id, 1, subject="Second")
        await wait_for(lambda: (message(ctx, second).hint or "").startswith("Not found"))

    # Past the settling time it still is not queued again: this server may have accepted it.
    await asyncio.sleep(SETTLE_AFTER)
    due_now(ctx, second)
    assert await direct_settler(ctx).settle_once() == (0, 0)
    left = message(ctx, second)
    assert left.status == "unknown"
    assert left.hint is not None
    assert f"Not found in {SENT} of {box.account.username} on 127.0.0.1" in left.hint
    assert "not known to file its own copy" in left.hint and " UTC" in left.hint
    assert received_ids(server.recorder)[left.message_id] == 1


async def test_a_filing_server_learnt_through_one_alias_does_not_resend_for_another(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    """Two aliases share one IMAP account but send through different SMTP servers: what was
    learnt through the filing one must not send again a message of the other (which may
    have accepted it without filing a copy)."""
    box = sent_box("shared")
    filing = await smtpd("none", script=box.filing())
    plain = await smtpd("none")
    filer = box.alias(filing, mailbox_login=True, name="Filer")
    other = box.alias(plain, mailbox_login=True, name="Other")
    [first] = queue(ctx, alice_actor, filer, 1, subject="First")
    async with running_worker(ctx):
        await wait_for(lambda: message(ctx, first).sent_copy is not None)
    assert box.files_copies() is True

    lost = await reaped(ctx, alice_actor, other)
    assert await direct_settler(ctx).settle_once() == (0, 0)
    left = message(ctx, lost)
    assert left.status == "unknown", left.hint
    assert "not known to file its own copy" in (left.hint or "")
    assert not plain.recorder.messages  # never sent again


@pytest.mark.parametrize("why", ["learnt", "provider"])
async def test_a_filing_server_does_not_resend_when_the_imap_account_is_another_mailbox(
    ctx: AppContext,
    alice_actor: Actor,
    smtpd: SmtpdFactory,
    sent_box: Callable[..., SentBox],
    why: str,
) -> None:
    """The alias logs in as one mailbox (bob@gmail.com) while its IMAP account is another
    (a company mailbox linked to read bounces, a shared mailbox it "sends as"): the server
    files its copy in the login's own Sent, so one missing from this account's proves
    nothing and the message must not be sent a second time."""
    box = sent_box("elsewhere")
    server = await smtpd("none")
    alias_id = box.alias(server)  # login: USER
    with ctx.db.write() as s:
        if why == "learnt":  # a "yes" learnt for the account
            s.get_one(ImapAccount, box.imap_id).files_sent_copy = True
        else:  # a provider known to file its own copy (no connection to it is made here)
            s.get_one(Alias, alias_id).smtp_host = "smtp.gmail.com"
    lost = await reaped(ctx, alice_actor, alias_id)
    for _ in range(2):
        due_now(ctx, lost)
        assert await direct_settler(ctx).settle_once() == (0, 0)
    left = message(ctx, lost)
    assert left.status == "unknown", left.hint
    assert f"Not found in {SENT} of {box.account.username}" in (left.hint or "")
    assert "not the sending login's mailbox" in (left.hint or "")
    assert "a missing copy proves nothing" in (left.hint or "")
    assert not server.recorder.messages  # never sent again


async def test_filing_is_learnt_only_through_the_sending_logins_own_mailbox(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    """The server files its copy into the login's mailbox; an alias whose IMAP account is
    another mailbox learns nothing from it (the rule the settler trusts it by), while the
    login's own mailbox does."""
    box = sent_box("notmine")
    filing = await smtpd("none", script=box.filing())
    other = box.alias(filing)  # login: the aiosmtpd fixture's user, not this mailbox
    [first] = queue(ctx, alice_actor, other, 1, subject="First")
    async with running_worker(ctx):
        await wait_for(lambda: message(ctx, first).sent_copy is not None)
    assert message(ctx, first).sent_copy == "skipped"  # the server's copy was there
    assert box.files_copies() is None  # not written: another login's mailbox

    own = box.alias(filing, mailbox_login=True, name="Own")
    [second] = queue(ctx, alice_actor, own, 1, subject="Second")
    async with running_worker(ctx):
        await wait_for(lambda: message(ctx, second).sent_copy is not None)
    assert box.files_copies() is True


async def test_a_yes_learnt_with_another_login_on_the_same_server_is_not_trusted(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    """Two aliases of one IMAP account send through one server with different logins: the
    "yes" may have been learnt through the other login, whose mail the server files
    elsewhere."""
    box = sent_box("twologins")
    server = await smtpd("none")
    mine = box.alias(server, mailbox_login=True, name="Mine")
    box.alias(server, name="Other")
    with ctx.db.write() as s:
        s.get_one(ImapAccount, box.imap_id).files_sent_copy = True
    lost = await reaped(ctx, alice_actor, mine)
    assert await direct_settler(ctx).settle_once() == (0, 0)
    left = message(ctx, lost)
    assert left.status == "unknown", left.hint
    assert "not known to file its own copy" in (left.hint or "")
    assert not server.recorder.messages


async def test_a_slow_pass_does_not_record_over_a_message_claimed_again(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    """Worker A looks in Sent; before it records "not found", the message was queued again,
    sent, became unknown again and was claimed by worker B. A's result is about the earlier
    attempt: recorded, it would queue the message a third time."""
    box = sent_box("stale")
    server = await smtpd("none")
    alias_id = box.alias(server, mailbox_login=True)
    with ctx.db.write() as s:
        s.get_one(ImapAccount, box.imap_id).files_sent_copy = True  # a missing copy would count
    lost = await reaped(ctx, alice_actor, alias_id)
    b_claim = utcnow() + timedelta(hours=1)

    def meanwhile() -> None:
        with ctx.db.write() as s:
            row = s.get_one(Message, lost)
            assert row.status == "unknown"  # as A's picker left it
            row.hint = "Unknown again after the second attempt."
            row.next_attempt_at = b_claim  # B's claim

    assert await direct_settler(ctx, before_recording=meanwhile).settle_once() == (0, 0)
    left = message(ctx, lost)
    assert left.status == "unknown"
    assert left.hint == "Unknown again after the second attempt."
    assert left.next_attempt_at == b_claim
    assert not server.recorder.messages


def test_changing_the_smtp_login_forgets_whether_it_files_copies(
    ctx: AppContext, alice_actor: Actor, offline_alias: tuple[int, int]
) -> None:
    imap_id, alias_id = offline_alias
    assert account_flag(ctx, imap_id) is True
    with ctx.db.write() as s:
        patch = AliasPatch(smtp_username="someone.else@example.test", smtp_password=SecretStr("p"))
        alias_service.update_alias(s, alice_actor, alias_id, patch, ctx.secrets)
    assert account_flag(ctx, imap_id) is None


async def test_imap_login_refused_leaves_it_unknown_with_the_reason(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    box = sent_box("refused", "not-the-password")
    server = await smtpd("none")
    alias_id = box.alias(server)
    mid = await reaped(ctx, alice_actor, alias_id, due=False)

    assert await direct_settler(ctx).settle_once() == (0, 0)
    left = message(ctx, mid)
    assert left.status == "unknown"
    assert left.hint is not None
    assert left.hint.startswith(
        f"Could not look for this message in the Sent folder of {box.account.username}"
    )
    assert "(login)" in left.hint and "not-the-password" not in left.hint
    assert server.recorder.messages == []  # nothing was sent while checking


async def test_xoauth2_mailbox_settles_it_and_the_page_and_api_say_so(
    ctx: AppContext,
    web: httpx.AsyncClient,
    admin: Person,
    alice: Person,
    oauth_server: OAuthServerFactory,
    dovecot_oauth: DovecotOAuthFactory,
    smtpd: SmtpdFactory,
) -> None:
    server = oauth_server("google")
    dovecot = dovecot_oauth(server, USER_EMAIL)
    # A signed-in alias whose IMAP account has no password: it logs in with the token.
    _, dovecot, mail, alias_id, _ = await signed_in_with_imap(
        ctx, web, admin, alice, server, dovecot, smtpd
    )
    mailbox = dovecot.mailbox_of(USER_EMAIL)
    mail.recorder.script.update(filing_script(dovecot, mailbox, SENT, then=DROP))
    mid = await send(web, alice, alias_id, "settled over xoauth2")

    async with running_worker(ctx):
        await wait_for(lambda: message(ctx, mid).status == "sent", within=30)

    settled = message(ctx, mid)
    assert settled.hint == CONFIRMED_IN_SENT
    assert received_ids(mail.recorder) == Counter({settled.message_id: 1})
    assert sent_ids(dovecot, mailbox) == Counter({settled.message_id: 1})
    api = await web.get(f"/api/messages/{mid}", headers=alice.headers)
    assert api.json()["status"] == "sent" and api.json()["hint"] == CONFIRMED_IN_SENT
    page = await web.get(f"/messages/{mid}")
    assert f"<strong>Note:</strong> {CONFIRMED_IN_SENT}" in page.text


async def test_form_letter_counts_move_when_a_message_is_confirmed(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, sent_box: Callable[..., SentBox]
) -> None:
    box = sent_box("letter")
    filing = box.filing()["DATA_END"]

    def file_and_drop_r1(received: Received) -> str | None:
        filing(received)
        return DROP if received.rcpt_tos == ["r1@example.org"] else None

    server = await smtpd("none", script={"DATA_END": file_and_drop_r1})
    alias_id = box.alias(server)
    campaign_id = form_letter(ctx, alice_actor, alias_id, 3)

    def letter() -> Any:
        with ctx.db.read() as s:
            return campaign_out(s, s.get_one(Campaign, campaign_id))

    # Rendered in a thread of the worker: no render processes to start on a busy machine.
    async with running_worker(ctx, dataclasses.replace(FAST, render_processes=0)):
        await wait_for(lambda: letter().counts.get("sent") == 3, within=30)

    done = letter()
    assert done.status == "completed"
    assert done.counts.get("unknown", 0) == 0
    with ctx.db.read() as s:
        hints = [m.hint for m in s.query(Message).filter(Message.campaign_id == campaign_id)]
    assert hints.count(CONFIRMED_IN_SENT) == 1
    assert len(server.recorder.messages) == 3  # nothing sent twice


def test_changing_the_smtp_server_forgets_whether_it_files_copies(
    ctx: AppContext, alice_actor: Actor, offline_alias: tuple[int, int]
) -> None:
    imap_id, alias_id = offline_alias
    with ctx.db.write() as s:  # a change elsewhere keeps what was learnt
        alias_service.update_alias(s, alice_actor, alias_id, AliasPatch(delay_ms=10), None)
    assert account_flag(ctx, imap_id) is True
    with ctx.db.write() as s:
        patch = AliasPatch(smtp_server="127.0.0.1:2526", smtp_password=SecretStr("pw"))
        alias_service.update_alias(s, alice_actor, alias_id, patch, ctx.secrets)
    assert account_flag(ctx, imap_id) is None


@pytest.mark.postgres
async def test_two_settlers_at_once_on_postgresql(
    postgres_url: str, tmp_path: Path, smtpd: SmtpdFactory, dovecot_server: Any
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url,
                        embedded_worker=False, smtp_timeout=3.0)  # fmt: skip
    pg = AppContext.build(settings)
    try:
        actor = make_actor(pg, "pat@example.test")
        box = link_sent_box(pg, actor, dovecot_server, "pg")
        server = await smtpd("none")
        alias_id = box.alias(server)
        filed, missing = (crashed_before_sending(pg, actor, alias_id) for _ in range(2))
        # The server filed the first one (as if accepted) before the worker died.
        raw = message(pg, filed).raw or b""
        imap = dovecot_server.connect(box.account)
        try:
            assert imap.append(f'"{SENT}"', "(\\Seen)", None, raw)[0] == "OK"
        finally:
            imap.logout()
        with pg.db.write() as s:
            assert reap_expired(s, utcnow()) == 2

        a, b = direct_settler(pg), direct_settler(pg)
        results = await asyncio.gather(a.settle_once(), b.settle_once())
        assert sum(r[0] for r in results) == 1 and sum(r[1] for r in results) == 0
        assert message(pg, filed).status == "sent"
        assert message(pg, filed).hint == CONFIRMED_IN_SENT
        left = message(pg, missing)
        assert left.status == "unknown" and (left.hint or "").startswith("Not found in")
    finally:
        pg.close()


def test_unknown_mail_that_cannot_be_checked_adds_nothing_to_a_pass(
    ctx: AppContext, alice_actor: Actor
) -> None:
    """A pass reads only the lanes of aliases with an IMAP account: the ``unknown``
    messages of aliases without one, which nothing checks and which stay due for ever, are
    not read at every pass (counted in SQLite's virtual machine instructions)."""
    data = ImapCreate(imap_server="127.0.0.1:1", tls="none", username="u",
                      password=SecretStr("p"))  # fmt: skip
    with ctx.db.write() as s:
        imap_id = imap_service.create_imap_account(s, alice_actor, data, ctx.secrets).id
    checked = sink_alias(ctx, alice_actor, 2525, "checked", 0)
    unchecked = sink_alias(ctx, alice_actor, 2525, "unchecked", 0)
    with ctx.db.write() as s:
        s.execute(update(Alias).where(Alias.id == checked).values(imap_account_id=imap_id))
    lost = crashed_before_sending(ctx, alice_actor, checked)
    with ctx.db.write() as s:
        assert reap_expired(s, utcnow()) == 1
    due_now(ctx, lost)
    pick = _Picker(SettleConfig(), ctx.secrets, None, ctx.settings.outbound_policy)

    def cost() -> int:
        with ctx.db.scratch() as s, vm_steps(s) as steps:  # rolled back: the claim too
            assert [item.id for group in pick(s) for item in group.items] == [lost]
        return steps[0]

    before = cost()
    letter = form_letter(ctx, alice_actor, unchecked, 3000)
    long_due = utcnow() - timedelta(hours=1)
    with ctx.db.write() as s:
        s.execute(update(Message).where(Message.campaign_id == letter)
                  .values(status="unknown", next_attempt_at=long_due))  # fmt: skip
    after = cost()
    # Read one by one (and joined to their alias), 3,000 messages cost about 27 thousand.
    assert after <= before + 2, (before, after)
