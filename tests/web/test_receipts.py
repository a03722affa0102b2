"""Receipts of a passing pre-save Test Connection: honoured only for the settings tested."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from sendas.config import Settings
from sendas.schemas import ConnectionTestResult
from sendas.web import receipts

FORM = {
    "from_address": "dana@example.test",
    "smtp_server": "smtp.example.test:587",
    "smtp_username": "dana@example.test",
    "smtp_password": "app password",
    "tls": "starttls",
    "allow_plaintext_auth": False,
    "description": "Sales",
}
OK = ConnectionTestResult(status="OK", steps=[])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, secret_key=SecretStr(Fernet.generate_key().decode()))


def test_a_receipt_gives_back_the_result_for_the_same_settings(settings: Settings) -> None:
    receipt = receipts.issue(settings, 7, None, FORM, OK)
    assert receipt is not None
    # Names and delay play no part in a connection test: changing them keeps the receipt.
    same = {**FORM, "description": "Sales desk", "reply_to": "team@example.test"}
    stored = receipts.redeem(settings, receipt, 7, None, same)
    assert stored is not None and stored["status"] == "OK"
    assert "app password" not in receipt  # the secret is only in a keyed digest


@pytest.mark.parametrize(
    ("user", "alias", "changes"),
    [
        (7, None, {"smtp_password": "another password"}),
        (7, None, {"smtp_server": "smtp.example.test:465"}),
        (7, None, {"tls": "implicit"}),
        (7, None, {"imap_account_id": 3}),
        (8, None, {}),  # another user's receipt
        (7, 12, {}),  # tested as a new alias, saved over an existing one
    ],
)
def test_a_receipt_is_refused_for_other_settings_users_or_aliases(
    settings: Settings, user: int, alias: int | None, changes: dict[str, object]
) -> None:
    receipt = receipts.issue(settings, 7, None, FORM, OK)
    assert receipt is not None
    assert receipts.redeem(settings, receipt, user, alias, {**FORM, **changes}) is None


def test_forged_stale_and_failed_receipts_count_for_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    receipt = receipts.issue(settings, 7, None, FORM, OK, now=1000.0)
    assert receipt is not None
    body, _, signature = receipt.partition(".")
    assert receipts.redeem(settings, receipt, 7, None, FORM, now=1000.0) is not None
    assert receipts.redeem(settings, receipt, 7, None, FORM, now=1000.0 + 31 * 60) is None
    forged = body + "." + ("1" if signature[0] == "0" else "0") + signature[1:]
    assert receipts.redeem(settings, forged, 7, None, FORM, now=1000.0) is None
    assert receipts.redeem(settings, "", 7, None, FORM) is None
    other = Settings(
        data_dir=tmp_path / "other", secret_key=SecretStr(Fernet.generate_key().decode())
    )
    assert receipts.redeem(other, receipt, 7, None, FORM, now=1000.0) is None
    failed = ConnectionTestResult(status="FAILED", step="auth", hint="wrong password")
    assert receipts.issue(settings, 7, None, FORM, failed) is None
