"""SMTP connections a lane may use at once: ``max_connections`` on aliases and on the
database outgoing settings (1 for every existing row: one connection, as before).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None

_TABLES = ("aliases", "system_outgoing")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("max_connections", sa.Integer(), nullable=False, server_default="1")
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("max_connections")
