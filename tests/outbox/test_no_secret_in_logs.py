"""No secret reaches a log line: a whole life of an alias, logged at DEBUG."""

from __future__ import annotations

import base64
import logging

import pytest

from sendas.context import AppContext
from sendas.services import connection_test
from sendas.services.common import Actor
from tests.outbox.conftest import all_final, make_alias, queue, running_worker, wait_for
from tests.servers.smtpd import PASSWORD, SmtpdFactory


async def test_password_never_logged(
    ctx: AppContext, alice_actor: Actor, smtpd: SmtpdFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await smtpd("none", pipelining=True)
    alias_id = make_alias(ctx, alice_actor, server)
    assert (await connection_test.check_saved_alias(ctx, alice_actor, alias_id)).status == "OK"
    ids = queue(ctx, alice_actor, alias_id, 3)
    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids))

    ours = [r for r in caplog.records if r.name.startswith("sendas")]
    assert ours, "sendas logged nothing at DEBUG: the test would prove nothing"
    text = "\n".join(r.getMessage() + repr(r.args) for r in ours)
    forms = [PASSWORD, base64.b64encode(PASSWORD.encode()).decode()]
    forms.append(base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode()).decode())
    for secret in forms:
        assert secret not in text
