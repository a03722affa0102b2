"""Secrets at rest: encrypted, never in the database file, rotatable, never printed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sendas.context import AppContext
from sendas.db.models import Alias
from sendas.errors import ConfigError, SecretKeyError
from sendas.secrets import SecretBox
from sendas.services.keys import rotate_key
from tests.api.test_aliases import GOOD, create
from tests.conftest import Person

PASSWORD = "Very-Distinctive-Password-4711"


def raw_database_bytes(ctx: AppContext) -> bytes:
    """The SQLite file and its WAL, as they sit on disk."""
    db = Path(ctx.settings.data_dir / "sendas.db")
    data = b""
    for p in (db, db.with_name("sendas.db-wal")):
        if p.exists():
            data += p.read_bytes()
    return data


def test_password_not_in_database_file(client: TestClient, alice: Person, ctx: AppContext):
    create(client, alice, smtp_password=PASSWORD)
    client.post(
        "/api/imap-accounts",
        json={"imap_server": "imap.example.com", "username": "a", "password": PASSWORD + "-imap"},
        headers=alice.headers,
    )
    raw = raw_database_bytes(ctx)
    assert b"alice@example.com" in raw  # the file does hold the alias
    assert PASSWORD.encode() not in raw


def test_key_file_created_with_mode_0600(ctx: AppContext):
    mode = stat.S_IMODE(os.stat(ctx.settings.key_file).st_mode)
    assert mode == 0o600


def test_repr_never_shows_key(ctx: AppContext):
    key = ctx.settings.key_file.read_text().strip()
    assert key not in repr(ctx.secrets)


def test_rotate_key_reencrypts_everything(client: TestClient, alice: Person, ctx: AppContext):
    a = create(client, alice, smtp_password=PASSWORD)
    old_key = ctx.settings.key_file.read_text().strip()
    with ctx.db.read() as s:
        old_token = s.get(Alias, a["id"]).smtp_password_enc
    assert rotate_key(ctx.db, ctx.secrets) >= 1
    new_key = ctx.settings.key_file.read_text().strip()
    assert new_key != old_key and "\n" not in new_key
    with ctx.db.read() as s:
        token = s.get(Alias, a["id"]).smtp_password_enc
    assert token != old_token
    # A fresh process reading only the new key file can decrypt; the old key cannot.
    fresh = SecretBox(key_file=ctx.settings.key_file)
    assert fresh.decrypt(token).get_secret_value() == PASSWORD
    with pytest.raises(SecretKeyError):
        SecretBox(env_keys=SecretStr(old_key)).decrypt(token)


def test_running_process_survives_rotation_by_another(
    client: TestClient, alice: Person, ctx: AppContext
):
    a = create(client, alice, smtp_password=PASSWORD)
    other_process = SecretBox(key_file=ctx.settings.key_file)
    rotate_key(ctx.db, other_process)
    with ctx.db.read() as s:
        token = s.get(Alias, a["id"]).smtp_password_enc
    # ctx.secrets still holds the old key in memory: it reloads the file and succeeds.
    assert ctx.secrets.decrypt(token).get_secret_value() == PASSWORD


def test_env_keys_newest_first_and_rotation():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox(env_keys=SecretStr(old)).encrypt("pw")
    both = SecretBox(env_keys=SecretStr(f"{new},{old}"))
    rotated = both.rotate_token(token)
    assert SecretBox(env_keys=SecretStr(new)).decrypt(rotated).get_secret_value() == "pw"


def test_bad_key_is_a_config_error_without_the_key():
    with pytest.raises(ConfigError) as info:
        SecretBox(env_keys=SecretStr("not-a-key-zzz"))
    assert "not-a-key-zzz" not in str(info.value)


def test_secret_errors_in_responses_do_not_leak(client: TestClient, alice: Person):
    r = client.post("/api/aliases", json={**GOOD, "smtp_password": 5}, headers=alice.headers)
    assert r.status_code == 422
    r = client.post(
        "/api/aliases", json={**GOOD, "smtp_password": "x" * 1001}, headers=alice.headers
    )
    assert r.status_code == 422 and "xxxxxxxx" not in r.text
