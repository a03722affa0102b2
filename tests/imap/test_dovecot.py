"""The copy to Sent and IMAP Test Connection against a real private Dovecot."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

from sendas.errors import AuthError, TlsError
from sendas.imap import ImapEndpoint, append_to_sent, find_sent_folder, probe_imap
from tests.servers.dovecot import DovecotAccount, DovecotServer

pytestmark = pytest.mark.dovecot


def endpoint(
    server: DovecotServer, account: DovecotAccount, *, implicit: bool = True, **kw: Any
) -> ImapEndpoint:
    settings: dict[str, Any] = {
        "host": server.host,
        "port": server.imaps_port if implicit else server.imap_port,
        "username": account.username,
        "password": SecretStr(account.password),
        "tls": "implicit" if implicit else "starttls",
        "ca_bundle_pem": server.ca_pem,
        "timeout": 10.0,
    }
    settings.update(kw)
    return ImapEndpoint(**settings)


def message(subject: str = "Copy to Sent") -> tuple[bytes, str]:
    """A message as it went over SMTP (CRLF), with a unique Message-ID."""
    msg_id = f"<{uuid.uuid4().hex}@sendas.test>"
    raw = (
        "From: Alice Example <alice@example.test>\r\n"
        "To: bob@example.test\r\n"
        f"Subject: {subject}\r\n"
        "Date: Tue, 05 Mar 2024 10:11:12 +0100\r\n"
        f"Message-ID: {msg_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Grüße,\r\n"
        ".leading dot and trailing spaces   \r\n"
        "Alice\r\n"
    ).encode()
    return raw, msg_id


def stored(server: DovecotServer, account: DovecotAccount, mailbox: str, msg_id: str) -> Any:
    found = [m for m in server.read_mailbox(account, mailbox) if msg_id.encode() in m.raw]
    assert len(found) == 1, f"{msg_id} found {len(found)} times in {mailbox}"
    return found[0]


async def test_append_lands_in_special_use_sent_byte_identical_and_seen(
    dovecot_server: DovecotServer,
) -> None:
    account = dovecot_server.special
    raw, msg_id = message()
    outcome = await append_to_sent(endpoint(dovecot_server, account), raw)
    assert outcome.status == "appended", outcome
    assert outcome.folder == "Sent Items"
    got = stored(dovecot_server, account, "Sent Items", msg_id)
    assert got.raw == raw
    assert "\\Seen" in got.flags
    assert outcome.uid == got.uid  # from APPENDUID
    # Filed under the time in its Date header, not the time of the copy.
    filed = datetime.strptime(got.internal_date, "%d-%b-%Y %H:%M:%S %z")
    assert filed == datetime(2024, 3, 5, 9, 11, 12, tzinfo=UTC)
    assert outcome.as_dict()["status"] == "appended"


async def test_account_without_special_use_finds_inbox_sent(
    dovecot_server: DovecotServer,
) -> None:
    account = dovecot_server.plain
    ep = endpoint(dovecot_server, account)
    assert await find_sent_folder(ep) == "INBOX.Sent"
    raw, msg_id = message()
    outcome = await append_to_sent(ep, raw)
    assert (outcome.status, outcome.folder) == ("appended", "INBOX.Sent")
    got = stored(dovecot_server, account, "INBOX.Sent", msg_id)
    assert got.raw == raw and "\\Seen" in got.flags


async def test_starttls_and_implicit_tls_both_work(dovecot_server: DovecotServer) -> None:
    for implicit in (True, False):
        result = (
            await probe_imap(endpoint(dovecot_server, dovecot_server.special, implicit=implicit))
        ).model_dump()
        assert result["status"] == "OK", result
        assert result["sent_folder"] == "Sent Items"
        assert [s["name"] for s in result["steps"]] == ["connect", "tls", "login", "find_sent"]
        assert result["steps"][1]["detail"] == ("SSL/TLS (implicit)" if implicit else "STARTTLS")


async def test_passing_probe_marks_every_step_ok_and_names_the_sent_folder(
    dovecot_server: DovecotServer,
) -> None:
    cases = [
        (dovecot_server.special, "Sent Items", "SPECIAL-USE \\Sent"),
        (dovecot_server.plain, "INBOX.Sent", "by name"),
    ]
    for account, folder, how in cases:
        result = await probe_imap(endpoint(dovecot_server, account))
        assert (result.status, result.step, result.sent_folder) == ("OK", None, folder), result
        assert [(s.name, s.ok) for s in result.steps] == [
            ("connect", True),
            ("tls", True),
            ("login", True),
            ("find_sent", True),
        ]
        assert result.steps[-1].detail == f"Sent folder: {folder} ({how})"
    override = endpoint(dovecot_server, dovecot_server.special, sent_folder="Drafts")
    result = await probe_imap(override)
    assert result.sent_folder == "Drafts"
    assert result.steps[-1].detail == "Sent folder: Drafts (account setting)"


async def test_override_folder_is_honoured(dovecot_server: DovecotServer) -> None:
    account = dovecot_server.add_account(layout="special")
    raw, msg_id = message()
    ep = endpoint(dovecot_server, account, sent_folder="Drafts")
    outcome = await append_to_sent(ep, raw)
    assert (outcome.status, outcome.folder) == ("appended", "Drafts")
    assert stored(dovecot_server, account, "Drafts", msg_id).raw == raw
    assert dovecot_server.read_mailbox(account, "Sent Items") == []


async def test_override_folder_missing_fails_with_hint(dovecot_server: DovecotServer) -> None:
    ep = endpoint(dovecot_server, dovecot_server.special, sent_folder="No Such Folder")
    outcome = await append_to_sent(ep, message()[0])
    assert outcome.status == "failed"
    assert outcome.step == "find_sent"
    assert "No Such Folder" in outcome.hint and "Sent Items" in outcome.hint
    result = (await probe_imap(ep)).model_dump()
    assert (result["status"], result["step"]) == ("FAILED", "find_sent")


async def test_wrong_password_fails_at_login_with_hint(dovecot_server: DovecotServer) -> None:
    account = dovecot_server.special
    secret = "definitely-wrong-" + uuid.uuid4().hex
    ep = endpoint(dovecot_server, account, password=SecretStr(secret))
    outcome = await append_to_sent(ep, message()[0])
    assert outcome.status == "failed"
    assert outcome.step == "login"
    assert "AUTHENTICATIONFAILED" in outcome.server_reply
    assert "password" in outcome.hint
    result = (await probe_imap(ep)).model_dump()
    assert result["status"] == "FAILED"
    assert result["step"] == "login"
    assert "user name or password" in result["hint"]
    assert [s["ok"] for s in result["steps"]] == [True, True, False]
    assert secret not in repr(outcome) and secret not in repr(result)
    with pytest.raises(AuthError) as caught:
        await find_sent_folder(ep)
    assert caught.value.step == "login" and secret not in str(caught.value)


async def test_untrusted_certificate_fails_at_tls(dovecot_server: DovecotServer) -> None:
    other_ca = trustme.CA().cert_pem.bytes().decode()
    for ca in (None, other_ca):
        for implicit in (True, False):
            ep = endpoint(
                dovecot_server, dovecot_server.special, implicit=implicit, ca_bundle_pem=ca
            )
            result = (await probe_imap(ep)).model_dump()
            assert (result["status"], result["step"]) == ("FAILED", "tls"), result
            assert "not trusted" in result["hint"]
            assert "CA certificate" in result["hint"]
    with pytest.raises(TlsError):
        await find_sent_folder(endpoint(dovecot_server, dovecot_server.special, ca_bundle_pem=None))
    outcome = await append_to_sent(
        endpoint(dovecot_server, dovecot_server.special, ca_bundle_pem=other_ca), message()[0]
    )
    assert (outcome.status, outcome.step) == ("failed", "tls")


async def test_implicit_tls_on_starttls_port_names_the_fix(dovecot_server: DovecotServer) -> None:
    ep = endpoint(dovecot_server, dovecot_server.special, port=dovecot_server.imap_port)
    result = (await probe_imap(ep)).model_dump()
    assert (result["status"], result["step"]) == ("FAILED", "tls")
    assert "wrong version number" in result["steps"][-1]["detail"]
    assert "993" in result["hint"] and "STARTTLS" in result["hint"]


async def test_starttls_on_implicit_port_times_out_with_hint(
    dovecot_server: DovecotServer,
) -> None:
    ep = endpoint(
        dovecot_server,
        dovecot_server.special,
        implicit=False,
        port=dovecot_server.imaps_port,
        timeout=1.0,
    )
    result = (await probe_imap(ep)).model_dump()
    assert (result["status"], result["step"]) == ("FAILED", "connect")
    assert "SSL/TLS (implicit)" in result["hint"]


async def test_nothing_listening_fails_at_connect() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        ep = ImapEndpoint("127.0.0.1", port, "u", SecretStr("p"), tls="implicit", timeout=5)
        result = (await probe_imap(ep)).model_dump()
    assert (result["status"], result["step"]) == ("FAILED", "connect")
    assert str(port) in result["hint"]


async def test_no_tls_needs_explicit_permission_to_send_password(
    dovecot_server: DovecotServer,
) -> None:
    account = dovecot_server.special
    ep = endpoint(dovecot_server, account, implicit=False, tls="none")
    result = (await probe_imap(ep)).model_dump()
    assert (result["status"], result["step"]) == ("FAILED", "login")
    assert "clear text" in result["hint"]
    allowed = endpoint(
        dovecot_server, account, implicit=False, tls="none", allow_plaintext_password=True
    )
    result = (await probe_imap(allowed)).model_dump()
    assert result["status"] == "OK", result
    assert [s["name"] for s in result["steps"]] == ["connect", "login", "find_sent"]


async def test_localized_name_is_found(dovecot_server: DovecotServer) -> None:
    account = dovecot_server.add_account()
    dovecot_server.create_folder(account, "Archiv")
    dovecot_server.create_folder(account, "Gesendet")
    ep = endpoint(dovecot_server, account)
    assert await find_sent_folder(ep) == "Gesendet"
    raw, msg_id = message()
    outcome = await append_to_sent(ep, raw)
    assert (outcome.status, outcome.folder) == ("appended", "Gesendet")
    assert stored(dovecot_server, account, "Gesendet", msg_id).raw == raw


async def test_modified_utf7_name_is_decoded_and_used(dovecot_server: DovecotServer) -> None:
    account = dovecot_server.add_account()
    dovecot_server.create_folder(account, "Envoy&AOk-s")  # "Envoyés" on the wire
    ep = endpoint(dovecot_server, account)
    result = (await probe_imap(ep)).model_dump()
    assert result["sent_folder"] == "Envoyés"
    raw, msg_id = message("Copie")
    outcome = await append_to_sent(ep, raw)
    assert (outcome.status, outcome.folder) == ("appended", "Envoyés")
    got = stored(dovecot_server, account, "Envoy&AOk-s", msg_id)
    assert got.raw == raw and "\\Seen" in got.flags


async def test_unicode_override_is_encoded(dovecot_server: DovecotServer) -> None:
    account = dovecot_server.add_account()
    dovecot_server.create_folder(account, "Sent")
    dovecot_server.create_folder(account, "Posta &AOg- inviata")  # "Posta è inviata"
    ep = endpoint(dovecot_server, account, sent_folder="Posta è inviata")
    raw, msg_id = message()
    outcome = await append_to_sent(ep, raw)
    assert (outcome.status, outcome.folder) == ("appended", "Posta è inviata")
    assert stored(dovecot_server, account, "Posta &AOg- inviata", msg_id).raw == raw


async def test_no_sent_folder_fails_and_lists_folders(dovecot_server: DovecotServer) -> None:
    account = dovecot_server.add_account()
    dovecot_server.create_folder(account, "Projects")
    ep = endpoint(dovecot_server, account)
    result = (await probe_imap(ep)).model_dump()
    assert (result["status"], result["step"]) == ("FAILED", "find_sent")
    assert "Projects" in result["hint"]
    outcome = await append_to_sent(ep, message()[0])
    assert (outcome.status, outcome.step) == ("failed", "find_sent")
    assert dovecot_server.read_mailbox(account, "INBOX") == []
