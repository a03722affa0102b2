"""Form letters remember the recipients they skipped because of the suppression list:
``suppressed_skips``, ``{"count": n, "addresses": [the first ones]}`` (NULL: none, as for
every existing letter).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("suppressed_skips", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35, PostgreSQL), as in 0012: a batch copy of the
    # table would drop the old one with foreign keys on, which cascades or is refused.
    op.execute("ALTER TABLE campaigns DROP COLUMN suppressed_skips")
