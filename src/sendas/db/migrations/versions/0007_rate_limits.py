"""Per-user limits: the uses of rate-limited actions, and an index to count waiting mail.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_rate_events_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_events")),
    )  # fmt: skip
    op.create_index("ix_rate_events_user_kind_at", "rate_events", ["user_id", "kind", "at"])
    op.create_index("ix_messages_user_status", "messages", ["user_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_messages_user_status", table_name="messages")
    op.drop_table("rate_events")
