"""``ix_messages_claim`` on (status, lane, campaign_id, next_attempt_at) instead of
(status, lane, next_attempt_at): a lane's single messages and each running form letter's
are found by a seek of their own, so that a worker's poll and claims never read the
messages of a paused form letter (they read all of them before, at every poll).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision: str | None = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_messages_claim", table_name="messages")
    op.create_index(
        "ix_messages_claim", "messages", ["status", "lane", "campaign_id", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_messages_claim", table_name="messages")
    op.create_index("ix_messages_claim", "messages", ["status", "lane", "next_attempt_at"])
