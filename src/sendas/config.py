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
    tls_detect_wait: float = Field(
        default=2.5,
        gt=0,
        le=30,
        description="Seconds 'Automatic' encryption waits for a server's greeting in Test "
        "Connection before it speaks TLS to a silent server (ports 465/993 start with TLS).",
    )
    test_step_timeout: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Seconds each step of a Test Connection (connect, TLS, greeting, each "
        "reply) may take, so a wrong encryption mode fails fast.",
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sendas.db').resolve()}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"
