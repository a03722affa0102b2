"""Settings, read from ``SENDAS_*`` environment variables.

Built by ``create_app()`` and the CLI, never at import time, so each test makes its own.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sendas.net.policy import OutboundPolicy


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
    worker_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Outbox workers `sendas serve` runs: 1 runs one inside the server; more "
        "run as child processes, stopped with the server (SQLite or PostgreSQL).",
    )
    worker_heartbeat_seconds: float = Field(
        default=1.0,
        gt=0,
        description="A worker renews the leases of its lanes and messages this often (from a "
        "thread of its own, independent of sending).",
    )
    worker_takeover_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Lanes (and messages) of a worker that missed its heartbeats this long are "
        "taken over by the others; its messages caught mid-submission become unknown.",
    )
    log_level: str = Field(default="INFO", description="Logging level.")
    session_secret: SecretStr | None = Field(
        default=None,
        description="Key signing web session cookies; unset: derived from the secret key.",
    )
    # --- limits per user and per request (0 switches a per-user limit off) ----------------
    tests_per_minute: int = Field(
        default=10,
        ge=0,
        description="Test Connection runs a user may start per minute (API and pages).",
    )
    messages_per_hour: int = Field(
        default=10_000,
        ge=0,
        description="Messages a user may queue per hour (single messages and form letters).",
    )
    max_queued_messages: int = Field(
        default=10_000,
        ge=0,
        description="Messages of one user waiting at once (queued, retrying or sending).",
    )
    max_request_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest request body, checked before it is parsed (413 past it).",
    )
    max_upload_request_bytes: int = Field(
        default=40 * 1024 * 1024,
        gt=0,
        description="Largest request body of the upload routes (messages with attachments, "
        "form letters with a CSV, their previews).",
    )
    max_login_request_bytes: int = Field(
        default=16 * 1024,
        gt=0,
        description="Largest request body of the log-in and first-run forms.",
    )
    max_attachment_bytes: int = Field(
        default=25 * 1024 * 1024,
        gt=0,
        description="Total size of one message's attachments (decoded).",
    )

    outbound_allow: str = Field(
        default="",
        description="Comma-separated CIDRs and host names that aliases and IMAP accounts may "
        "reach although they are loopback, private, link-local or cloud-metadata addresses "
        "(refused otherwise), e.g. a local relay: 127.0.0.1/32 or relay.internal.",
    )

    @field_validator("outbound_allow")
    @classmethod
    def _check_outbound_allow(cls, value: str) -> str:
        OutboundPolicy.from_setting(value)  # a bad entry stops the start, naming it
        return value

    @property
    def outbound_policy(self) -> OutboundPolicy:
        """The policy every connection of an alias or IMAP account is checked against."""
        return OutboundPolicy.from_setting(self.outbound_allow)

    trusted_proxies: str = Field(
        default="",
        description="Comma-separated CIDRs of reverse proxies whose X-Forwarded-For header is "
        "believed (for the log-in throttle and `sendas serve`'s client address); empty: "
        "none, the direct peer is the client.",
    )
    sessions_per_user: int = Field(
        default=20,
        ge=1,
        description="Signed-in browsers kept per user; a new log-in past it ends the oldest.",
    )

    template_render_timeout: float = Field(
        default=2.0,
        gt=0,
        description="Seconds a form letter may take to render for one recipient; past it the "
        "recipient is reported by the check before a letter is queued, and retried later "
        "(failing after the last attempt) when it is sent (the render process is replaced).",
    )
    template_max_output: int = Field(
        default=1_000_000,
        gt=0,
        description="Characters a form letter may render to for one recipient (subject, text "
        "and HTML together, and any one string built on the way).",
    )
    template_check_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Seconds checking every recipient of a new form letter may take in all "
        "(and a preview's wait for a free render process).",
    )
    template_check_max_rows: int = Field(
        default=1_000_000,
        gt=0,
        description="Recipients one form letter may have: each is rendered before it is queued.",
    )
    template_check_processes: int = Field(
        default=2,
        ge=1,
        description="Processes of the API that render previews and check new form letters.",
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

    tls_detect_wait: float = Field(
        default=2.5,
        gt=0,
        le=30,
        description="Seconds 'Automatic' encryption waits for a server's greeting in Test "
        "Connection before it speaks TLS to a silent server (ports 465/993 start with TLS).",
    )
    test_step_timeout: float = Field(
        default=4.0,
        gt=0,
        le=120,
        description="Seconds each step of a Test Connection (connect, TLS, greeting, each "
        "reply) may take, so a wrong encryption mode fails fast.",
    )
    max_connections_cap: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Most SMTP connections one alias (or the outgoing settings) may use at "
        "once (its max_connections, allowed above 1 only without a delay).",
    )
    # --- settling unknown messages from the Sent folder (sendas.outbox.settle_from_sent) ---
    settle_every_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="How often a worker looks for unknown messages in their aliases' Sent "
        "folders (one IMAP connection per account per look).",
    )
    settle_batch: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Most unknown messages one look checks; the rest wait for the next.",
    )
    settle_after_seconds: float = Field(
        default=180.0,
        gt=0,
        description="An unknown message still missing from the Sent folder this long after it "
        "was last on the wire goes back to the queue, when the mailbox files its own copy of "
        "accepted mail (it was never accepted); otherwise it stays unknown.",
    )
    # The bounce watch (sendas.outbox.bounces): the outbox worker reads linked IMAP INBOXes.
    bounce_scan: bool = Field(
        default=True,
        description="The outbox worker watches the INBOX of every IMAP account linked to an "
        "alias for bounces (read-only: nothing is deleted, moved or flagged).",
    )
    bounce_poll_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86400,
        description="Seconds between bounce-watch rounds of an account (without IDLE, the "
        "polling interval).",
    )
    bounce_idle_seconds: float = Field(
        default=300.0,
        ge=0,
        le=1740,
        description="Seconds a round waits in IMAP IDLE for new mail where the server offers "
        "it (0: never idle, poll only).",
    )
    bounce_max_accounts: int = Field(
        default=4,
        ge=1,
        le=100,
        description="IMAP accounts one worker watches at once (one connection each).",
    )
    bounce_max_messages: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="Messages a bounce-watch pass reads from one INBOX; the rest wait for "
        "the next round.",
    )
    bounce_max_message_bytes: int = Field(
        default=262144,
        ge=4096,
        le=10485760,
        description="Bytes of each INBOX message the bounce watch reads (the first part of a "
        "larger one: a bounce's report and returned headers come first).",
    )
    bounce_lookback_days: int = Field(
        default=7,
        ge=0,
        le=3650,
        description="An INBOX the bounce watch sees for the first time (or under a new "
        "UIDVALIDITY) is read from the messages received in this many days (0: all of it).",
    )
    bounce_pending_wait_seconds: float = Field(
        default=900.0,
        ge=0,
        le=86400,
        description="A bounce of a message whose send is not recorded yet (still sending) "
        "holds the INBOX pass at it this long at most; then it is handled as it stands.",
    )
    worker_wake_ms: float = Field(
        default=25.0,
        ge=0,
        le=1000,
        description="While a worker waits for its next look for work, it checks this often "
        "whether a process sharing its data folder just queued mail (a file's time there) and "
        "looks at once if so (0: only at its polls).",
    )
    send_window: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Messages one connection of a lane without delay has marked 'sending' and "
        "not yet recorded, at most: the pipelined window (a worker killed mid-send leaves at "
        "most this many 'unknown' per connection).",
    )
    group_commit_ms: float = Field(
        default=3.0,
        ge=0,
        le=1000,
        description="Milliseconds a lane without delay gathers the replies that arrive before "
        "recording them in one commit (overlapping with the wire).",
    )
    render_processes: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Processes of each outbox worker that render form letters (0: a thread "
        "of the worker).",
    )
    render_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How much lower the CPU priority of the render processes is than the "
        "worker's (Unix nice): where the cores are busy, sending comes before rendering ahead.",
    )
    db_retry_seconds: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="Seconds the outbox worker keeps trying a write whose database connection "
        "was lost (a PostgreSQL restart) before giving up on it; 0 turns the retries off.",
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sendas.db').resolve()}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"
