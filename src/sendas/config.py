"""Settings, read from ``SENDAS_*`` environment variables.

Built by ``create_app()`` and the CLI, never at import time, so each test makes its own.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting sendas reads. The README documents each one (a test checks)."""

    model_config = SettingsConfigDict(env_prefix="SENDAS_", extra="ignore")

    data_dir: Path = Field(
        default=Path("var"),
        description="Folder for the SQLite database and the generated key file.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means SQLite at DATA_DIR/sendas.db. "
        "Use postgresql+psycopg://user:pass@host/db for many workers.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) encrypting stored secrets, comma-separated, newest first. "
        "Unset: a key file DATA_DIR/secret.key is created (mode 0600).",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8025",
        description="Public URL of the service (OAuth redirect URIs are built from it).",
    )
    host: str = Field(default="127.0.0.1", description="Address `sendas serve` listens on.")
    port: int = Field(default=8025, description="Port `sendas serve` listens on.")
    smtp_timeout: float = Field(
        default=30.0, description="Seconds to wait for a connection and for every SMTP/IMAP reply."
    )
    embedded_worker: bool = Field(
        default=True, description="Run the outbox worker inside `sendas serve`."
    )
    log_level: str = Field(default="INFO", description="Logging level.")
    session_secret: SecretStr | None = Field(
        default=None,
        description="Key signing web session cookies; unset: derived from the secret key.",
    )
    csv_max_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1,
        description="Largest recipient CSV (bytes) a form letter accepts, counted while "
        "reading; larger files are refused with 413 and nothing is queued.",
    )
    csv_max_rows: int = Field(
        default=100_000,
        ge=1,
        description="Most recipient rows in one CSV; more are refused with 413, nothing queued.",
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sendas.db').resolve()}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"
