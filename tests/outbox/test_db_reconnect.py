"""A PostgreSQL restart while the worker records: the outcomes the SMTP server gave are
still stored (the write is tried again on a new connection, :mod:`sendas.outbox.txqueue`),
and a copy to Sent whose record fails for good is logged, not left unretrieved.

The restart is played by ending every connection of the database (``pg_terminate_backend``)
right between the submission and the write of its outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sendas.context import AppContext
from sendas.outbox import driver_writes, worker
from tests.conftest import make_actor
from tests.outbox.conftest import make_alias, message, queue, running_worker, wait_for
from tests.outbox.test_copy_to_sent import add_imap, copy_recorded
from tests.servers.postgres import libpq_conninfo
from tests.servers.smtpd import SmtpdFactory

pytestmark = pytest.mark.postgres


def _disconnecting(
    url: str, real: Callable[..., Any], calls: list[int], *, every: bool = False
) -> Callable[..., Any]:
    """``real``, whose first call (``every``: each call) finds its connection (and every
    other) ended."""
    conninfo = libpq_conninfo(make_url(url))

    def wrapped(session: Session, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1 or every:
            session.connection()  # checked out (and pinged) before the "restart"
            with psycopg.connect(conninfo, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        return real(session, *args, **kwargs)

    return wrapped


def _cut_short_is_false(check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, False when the "restart" ended the test's own read (its connection is
    the same pool's): the next look takes a new one."""

    def safe() -> bool:
        try:
            return check()
        except OperationalError:
            return False

    return safe


@pytest.mark.parametrize("write", ["record_many", "mark_many"])
async def test_mail_goes_out_once_and_is_recorded_when_the_connection_is_lost(
    pg_ctx: AppContext,
    postgres_url: str,
    smtpd: SmtpdFactory,
    monkeypatch: pytest.MonkeyPatch,
    write: str,
) -> None:
    """``record_many``: the connection is lost after the server's replies came in (the chaos
    bench's fault); ``mark_many``: before the messages are marked sending."""
    server = await smtpd("none", pipelining=True)
    actor = make_actor(pg_ctx, "alice@example.test")
    ids = queue(pg_ctx, actor, make_alias(pg_ctx, actor, server), 3)
    calls: list[int] = []
    real = getattr(driver_writes, write)
    monkeypatch.setattr(driver_writes, write, _disconnecting(postgres_url, real, calls))
    async with running_worker(pg_ctx):
        await wait_for(_cut_short_is_false(lambda: all(message(pg_ctx, i).status == "sent"
                                                       for i in ids)), within=60)  # fmt: skip
    assert len(calls) >= 2  # the first write was lost and made again
    assert sorted(m.rcpt_tos[0] for m in server.recorder.messages) == [
        "r0@example.org",
        "r1@example.org",
        "r2@example.org",
    ]
    assert all(message(pg_ctx, i).attempts == 1 for i in ids)


async def test_the_copy_to_sent_is_recorded_when_the_connection_is_lost(
    pg_ctx: AppContext,
    postgres_url: str,
    smtpd: SmtpdFactory,
    dovecot_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = await smtpd("none", pipelining=True)
    actor = make_actor(pg_ctx, "alice@example.test")
    account = dovecot_server.add_account("reconnect", layout="special")
    imap_id = add_imap(pg_ctx, actor, dovecot_server, account, account.password)
    [mid] = queue(pg_ctx, actor, make_alias(pg_ctx, actor, server, imap_account_id=imap_id), 1)
    calls: list[int] = []
    real = worker.record_sent_copy
    monkeypatch.setattr(worker, "record_sent_copy", _disconnecting(postgres_url, real, calls))
    async with running_worker(pg_ctx):
        await wait_for(_cut_short_is_false(lambda: copy_recorded(pg_ctx, mid)), within=60)
    assert message(pg_ctx, mid).sent_copy == "appended"
    assert len(dovecot_server.read_mailbox(account, "Sent Items")) == 1


async def test_a_copy_to_sent_that_cannot_be_recorded_is_logged(
    pg_ctx: AppContext,
    postgres_url: str,
    smtpd: SmtpdFactory,
    dovecot_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await smtpd("none", pipelining=True)
    actor = make_actor(pg_ctx, "alice@example.test")
    account = dovecot_server.add_account("lostcopy", layout="special")
    imap_id = add_imap(pg_ctx, actor, dovecot_server, account, account.password)
    [mid] = queue(pg_ctx, actor, make_alias(pg_ctx, actor, server, imap_account_id=imap_id), 1)
    pg_ctx.settings.db_retry_seconds = 0  # no second try: the record fails for good
    calls: list[int] = []
    real = worker.record_sent_copy
    # Every call: a group commit that failed is run again one operation at a time, and the
    # record would then go through (the copy recorded after all, nothing to log).
    lost = _disconnecting(postgres_url, real, calls, every=True)
    monkeypatch.setattr(worker, "record_sent_copy", lost)
    caplog.set_level(logging.ERROR, logger="sendas.outbox")

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if "copy to Sent" in r.getMessage()]

    async with running_worker(pg_ctx):
        await wait_for(lambda: bool(logged()), within=60)
    assert f"message {mid}" in logged()[0]
    assert message(pg_ctx, mid).status == "sent"
