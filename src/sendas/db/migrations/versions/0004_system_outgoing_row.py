"""The database outgoing settings' one row (id 1), so that reading them never writes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM system_outgoing WHERE id = 1")).first() is None:
        table = sa.table(
            "system_outgoing",
            sa.column("id", sa.Integer), sa.column("from_address", sa.String),
            sa.column("from_name", sa.String), sa.column("delay_ms", sa.Integer),
            sa.column("smtp_host", sa.String), sa.column("smtp_port", sa.Integer),
            sa.column("smtp_username", sa.String), sa.column("tls", sa.String),
            sa.column("allow_plaintext_auth", sa.Boolean),
            sa.column("updated_at", sa.DateTime(timezone=True)),
        )  # fmt: skip
        op.bulk_insert(table, [{
            "id": 1, "from_address": "", "from_name": "", "delay_ms": 0, "smtp_host": "",
            "smtp_port": 587, "smtp_username": "", "tls": "auto",
            "allow_plaintext_auth": False, "updated_at": datetime.now(UTC),
        }])  # fmt: skip


def downgrade() -> None:
    # The row may hold settings by now; an empty one is as good as none to 0003.
    op.execute("DELETE FROM system_outgoing WHERE id = 1 AND smtp_host = ''")
