"""Per-campaign message counts by status, kept by the outbox; backfilled from the messages.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None

# Every status a message can have (sendas.statuses.MessageStatus, frozen here).
STATUSES = ("queued", "sending", "sent", "retrying", "failed", "unknown", "cancelled", "bounced")


def upgrade() -> None:
    op.create_table(
        "campaign_counts",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("mark_n", sa.Integer(), nullable=False),
        sa.Column("mark_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recent_n", sa.Integer(), nullable=False),
        sa.Column("recent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"],
            name=op.f("fk_campaign_counts_campaign_id_campaigns"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "status", name=op.f("pk_campaign_counts")),
    )  # fmt: skip
    # One row per (campaign, status), zero where no message has it; then the real counts.
    values = " UNION ALL ".join(f"SELECT '{s}' AS status" for s in STATUSES)
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, status, n, mark_n, recent_n) "
        f"SELECT c.id, s.status, 0, 0, 0 FROM campaigns c CROSS JOIN ({values}) s"
    )
    op.execute(
        "UPDATE campaign_counts SET n = (SELECT count(*) FROM messages m "
        "WHERE m.campaign_id = campaign_counts.campaign_id "
        "AND m.status = campaign_counts.status)"
    )


def downgrade() -> None:
    op.drop_table("campaign_counts")
