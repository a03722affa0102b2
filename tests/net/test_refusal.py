"""The outbound policy end to end, with the policy in place (``SENDAS_OUTBOUND_ALLOW`` empty
for these tests): loopback spellings and a name resolving to loopback are refused by Test
Connection (unsaved and saved aliases, IMAP accounts) and by the outbox, with an error naming
the setting, and the listener behind them never sees a connection.

Only loopback is ever aimed at: no test here reaches for an address off this machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from sendas.api import create_app
from sendas.config import Settings
from sendas.context import AppContext
from sendas.schemas import AliasCreate, ImapCreate
from sendas.services import aliases as alias_service
from sendas.services import imap_accounts as imap_service
from sendas.services.common import Actor
from tests.conftest import Person
from tests.net.conftest import Listener, ListenerFactory
from tests.outbox.conftest import all_final, message, queue, running_worker, wait_for
from tests.servers.smtpd import PASSWORD, USER, SmtpdFactory

SETTING = "SENDAS_OUTBOUND_ALLOW"
SMTP_BANNER = b"220 trap.test ESMTP\r\n"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The policy as shipped: nothing non-public allowed."""
    return Settings(
        data_dir=tmp_path / "data", embedded_worker=False, smtp_timeout=3.0, outbound_allow=""
    )


@pytest_asyncio.fixture
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx.settings, ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://sendas.test") as c:
        yield c


LOOPBACK_SPELLINGS = ["127.0.0.1", "localhost", "0x7f000001", "[::ffff:127.0.0.1]"]


def alias_body(server: str, **over: Any) -> dict[str, Any]:
    body = {
        "description": "Probe",
        "alias_name": "Alice",
        "from_address": "alice@example.com",
        "smtp_server": server,
        "tls": "none",
        "allow_plaintext_auth": True,
        "smtp_username": USER,
        "smtp_password": PASSWORD,
    }
    body.update(over)
    return body


def assert_refused(result: dict[str, Any], listener: Listener, step: str = "connect") -> None:
    """Failed at the connect step, saying why and naming the setting; nothing connected."""
    assert result["status"] == "FAILED", result
    assert result["step"] == step, result
    failed = result["steps"][-1]
    assert failed["ok"] is False and failed["name"] == step
    assert "address" in failed["detail"] and SETTING in failed["detail"], failed
    assert SETTING in result["hint"]
    assert listener.accepted == 0


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_unsaved_settings_to_loopback_are_refused(
    api: httpx.AsyncClient, alice: Person, listener: ListenerFactory, host: str
) -> None:
    trap = await listener(SMTP_BANNER)
    r = await api.post(
        "/api/aliases/test", json=alias_body(f"{host}:{trap.port}"), headers=alice.headers
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert_refused(result, trap)
    assert "loopback" in result["steps"][-1]["detail"]
    # The refusal says nothing about the port: the same answer whether it is open or not.
    assert str(trap.port) not in result["steps"][-1]["detail"] + result["hint"]


async def test_refusal_does_not_tell_an_open_port_from_a_closed_one(
    api: httpx.AsyncClient, alice: Person, listener: ListenerFactory
) -> None:
    trap = await listener(SMTP_BANNER)
    closed = await listener(b"")
    port_closed = closed.port
    answers = []
    for port in (trap.port, port_closed):
        r = await api.post(
            "/api/aliases/test", json=alias_body(f"127.0.0.1:{port}"), headers=alice.headers
        )
        result = r.json()
        answers.append((result["step"], result["server_reply"], result["hint"],
                        [(s["name"], s["detail"]) for s in result["steps"]]))  # fmt: skip
    assert answers[0] == answers[1]
    assert trap.accepted == 0 and closed.accepted == 0


async def test_saved_alias_test_to_a_name_resolving_to_loopback_is_refused(
    api: httpx.AsyncClient, alice: Person, listener: ListenerFactory
) -> None:
    trap = await listener(SMTP_BANNER)
    r = await api.post(
        "/api/aliases", json=alias_body(f"localhost:{trap.port}"), headers=alice.headers
    )
    assert r.status_code == 201, r.text
    alias_id = r.json()["id"]
    result = (await api.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert_refused(result, trap)
    assert result["steps"][-1]["detail"].startswith("localhost resolves to ")
    stored = (await api.get(f"/api/aliases/{alias_id}", headers=alice.headers)).json()
    assert stored["last_test"]["status"] == "FAILED" and stored["last_test"]["step"] == "connect"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_imap_account_test_to_loopback_is_refused(
    api: httpx.AsyncClient, alice: Person, listener: ListenerFactory, host: str
) -> None:
    trap = await listener(b"* OK IMAP4rev1 trap ready\r\n")
    r = await api.post(
        "/api/imap-accounts",
        json={
            "imap_server": f"{host}:{trap.port}",
            "tls": "none",
            "username": "alice",
            "password": "imap-secret",
            "allow_plaintext_auth": True,
        },
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    result = (
        await api.post(f"/api/imap-accounts/{r.json()['id']}/test", headers=alice.headers)
    ).json()
    assert_refused(result, trap)


async def test_alias_test_with_its_imap_account_refused_names_imap_connect(
    ctx: AppContext, api: httpx.AsyncClient, alice: Person, smtpd: SmtpdFactory,
    listener: ListenerFactory,
) -> None:  # fmt: skip
    """SMTP allowed by host name (``localhost``), IMAP on 127.0.0.1 is not."""
    ctx.settings.outbound_allow = "localhost"
    server = await smtpd("none")
    trap = await listener(b"* OK IMAP4rev1 trap ready\r\n")
    acc = await api.post(
        "/api/imap-accounts",
        json={"imap_server": f"127.0.0.1:{trap.port}", "tls": "none", "username": "alice",
              "password": "imap-secret", "allow_plaintext_auth": True},
        headers=alice.headers,
    )  # fmt: skip
    body = alias_body(f"localhost:{server.port}", imap_account_id=acc.json()["id"])
    alias_id = (await api.post("/api/aliases", json=body, headers=alice.headers)).json()["id"]
    result = (await api.post(f"/api/aliases/{alias_id}/test", headers=alice.headers)).json()
    assert result["step"] == "imap_connect", result
    assert [s["name"] for s in result["steps"] if s["ok"]][-1] == "quit"  # SMTP went through
    assert SETTING in result["steps"][-1]["detail"] and trap.accepted == 0


def make_alias(ctx: AppContext, actor: Actor, server: str, **extra: Any) -> int:
    data = AliasCreate(
        description="Work", alias_name="Work", from_address="work@example.test",
        smtp_server=server, tls="none", allow_plaintext_auth=True, smtp_username=USER,
        smtp_password=SecretStr(PASSWORD), **extra,
    )  # fmt: skip
    with ctx.db.write() as s:
        return alias_service.create_alias(s, actor, data, ctx.secrets)[0].id


@pytest.mark.parametrize("host", ["localhost", "0x7f000001"])
async def test_queued_mail_for_a_refused_alias_fails_with_the_reason(
    ctx: AppContext, alice: Person, listener: ListenerFactory, host: str
) -> None:
    """A saved alias whose server address is refused: its messages fail for good (the
    setting decides, no retry would change it), each saying why; nothing connects."""
    trap = await listener(SMTP_BANNER)
    actor = Actor(alice.id, alice.email, False)
    alias_id = make_alias(ctx, actor, f"{host}:{trap.port}")
    ids = queue(ctx, actor, alias_id, 3)
    async with running_worker(ctx):
        await wait_for(all_final(ctx, ids))
    for message_id in ids:
        row = message(ctx, message_id)
        assert row.status == "failed"
        assert row.error_step == "connect"
        assert row.server_reply is not None and "loopback address" in row.server_reply
        assert SETTING in row.server_reply and row.hint is not None and SETTING in row.hint
    assert trap.accepted == 0


async def test_copy_to_sent_on_a_refused_imap_address_fails_with_the_reason(
    ctx: AppContext, alice: Person, smtpd: SmtpdFactory, listener: ListenerFactory
) -> None:
    """The mail goes (SMTP host allowed by name), its copy to Sent does not: that copy is
    recorded as failed with the reason, the message stays sent."""
    ctx.settings.outbound_allow = "localhost"
    server = await smtpd("none")
    trap = await listener(b"* OK IMAP4rev1 trap ready\r\n")
    actor = Actor(alice.id, alice.email, False)
    with ctx.db.write() as s:
        acc = imap_service.create_imap_account(
            s, actor,
            ImapCreate(imap_server=f"127.0.0.1:{trap.port}", tls="none", username="alice",
                       password=SecretStr("imap-secret"), allow_plaintext_auth=True),
            ctx.secrets,
        )  # fmt: skip
        account_id = acc.id
    alias_id = make_alias(ctx, actor, f"localhost:{server.port}", imap_account_id=account_id)
    (message_id,) = queue(ctx, actor, alias_id, 1)
    async with running_worker(ctx):
        await wait_for(lambda: message(ctx, message_id).sent_copy not in (None, "pending"))
    row = message(ctx, message_id)
    assert row.status == "sent" and len(server.recorder.messages) == 1
    assert row.sent_copy == "failed"
    assert row.sent_copy_detail is not None and SETTING in row.sent_copy_detail
    assert trap.accepted == 0


async def test_the_database_outgoing_settings_are_exempt(
    api: httpx.AsyncClient, admin: Person, smtpd: SmtpdFactory
) -> None:
    server = await smtpd("none")
    body = {
        "smtp_server": f"127.0.0.1:{server.port}", "tls": "none", "allow_plaintext_auth": True,
        "smtp_username": USER, "smtp_password": PASSWORD, "from_address": "noreply@example.com",
    }  # fmt: skip
    assert (
        await api.put("/api/system/outgoing", json=body, headers=admin.headers)
    ).status_code == 200
    result = (await api.post("/api/system/outgoing/test", headers=admin.headers)).json()
    assert result["status"] == "OK", result
