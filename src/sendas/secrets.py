"""Encryption at rest for passwords, OAuth tokens and client secrets.

Keys come from ``SENDAS_SECRET_KEY`` (comma-separated, newest first) or from a key file
(one key per line, newest first) created on first use with mode 0600. Rotation prepends a
new key, re-encrypts every stored secret, then drops the old keys; a process that meets a
token it cannot read reloads the key file once, so rotation needs no downtime.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from sendas.errors import ConfigError, SecretKeyError
from sendas.private_files import private_dir


def _parse_keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.replace(",", "\n").splitlines() if k.strip()]
    for k in keys:
        try:
            Fernet(k.encode())
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "a secret key is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from exc
    return keys


def write_key_file(path: Path, keys: list[str]) -> None:
    """Write keys atomically with mode 0600."""
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(keys) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class SecretBox:
    """Encrypts and decrypts stored secrets. Its repr never shows a key."""

    def __init__(self, *, env_keys: SecretStr | None = None, key_file: Path | None = None):
        if env_keys is None and key_file is None:
            raise ConfigError("SecretBox needs SENDAS_SECRET_KEY or a key file")
        self._env_keys = env_keys
        self._key_file = key_file
        self._lock = threading.Lock()
        self._keys = self._load()

    def __repr__(self) -> str:
        return f"SecretBox(keys=..., source={'env' if self._env_keys else 'file'})"

    @property
    def uses_key_file(self) -> bool:
        return self._env_keys is None

    @property
    def key_file(self) -> Path | None:
        return self._key_file

    def _load(self) -> list[str]:
        if self._env_keys is not None:
            keys = _parse_keys(self._env_keys.get_secret_value())
            if not keys:
                raise ConfigError("SENDAS_SECRET_KEY is empty")
            return keys
        assert self._key_file is not None
        if not self._key_file.exists():
            write_key_file(self._key_file, [Fernet.generate_key().decode()])
        keys = _parse_keys(self._key_file.read_text())
        if not keys:
            raise ConfigError(f"key file {self._key_file} holds no key")
        return keys

    def _fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(k.encode()) for k in self._keys])

    def reload(self) -> None:
        with self._lock:
            self._keys = self._load()

    def encrypt(self, plaintext: str | SecretStr) -> str:
        value = plaintext.get_secret_value() if isinstance(plaintext, SecretStr) else plaintext
        return self._fernet().encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> SecretStr:
        try:
            return SecretStr(self._fernet().decrypt(token.encode()).decode())
        except InvalidToken:
            # Another process may have rotated the key file under us: read it again once.
            self.reload()
            try:
                return SecretStr(self._fernet().decrypt(token.encode()).decode())
            except InvalidToken as exc:
                raise SecretKeyError(
                    "a stored secret cannot be decrypted with the configured key(s)"
                ) from exc

    def rotate_token(self, token: str) -> str:
        """Re-encrypt ``token`` under the newest key."""
        try:
            return self._fernet().rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError("a stored secret cannot be decrypted for rotation") from exc

    # Rotation over a key file: add the new key first, then (after re-encryption) drop the rest.
    def begin_rotation(self) -> str:
        if not self.uses_key_file:
            raise ConfigError(
                "keys come from SENDAS_SECRET_KEY: put the new key first in it "
                "(new,old) and run rotate-key again, then remove the old one"
            )
        assert self._key_file is not None
        new_key = Fernet.generate_key().decode()
        with self._lock:
            write_key_file(self._key_file, [new_key, *self._keys])
            self._keys = [new_key, *self._keys]
        return new_key

    def finish_rotation(self) -> None:
        if not self.uses_key_file:
            return
        assert self._key_file is not None
        with self._lock:
            write_key_file(self._key_file, self._keys[:1])
            self._keys = self._keys[:1]


def make_secret_box(secret_key: SecretStr | None, key_file: Path) -> SecretBox:
    if secret_key is not None and secret_key.get_secret_value().strip():
        return SecretBox(env_keys=secret_key)
    return SecretBox(key_file=key_file)
