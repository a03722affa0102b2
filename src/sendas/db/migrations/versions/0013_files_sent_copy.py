"""Whether an IMAP account's mail server files its own copy of accepted mail in Sent
(``files_sent_copy``: NULL not known yet, true, false), learnt after a send.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("imap_accounts", sa.Column("files_sent_copy", sa.Boolean(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35, PostgreSQL), as in 0012: a batch copy of the
    # table would drop the old one with foreign keys on, which cascades or is refused.
    op.execute("ALTER TABLE imap_accounts DROP COLUMN files_sent_copy")
