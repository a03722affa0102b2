"""``ix_campaigns_alias_status`` on (alias_id, status) instead of ``ix_campaigns_alias_id``:
a worker's poll and claims find an alias's running form letters by a seek, where they read
every letter the alias ever sent and checked its status (linear in the alias's history,
in a write transaction, at every poll).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision: str | None = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_campaigns_alias_status", "campaigns", ["alias_id", "status"])
    op.drop_index("ix_campaigns_alias_id", table_name="campaigns")


def downgrade() -> None:
    op.create_index("ix_campaigns_alias_id", "campaigns", ["alias_id"])
    op.drop_index("ix_campaigns_alias_status", table_name="campaigns")
