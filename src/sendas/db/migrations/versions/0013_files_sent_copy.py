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
    with op.batch_alter_table("imap_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("files_sent_copy", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imap_accounts", schema=None) as batch_op:
        batch_op.drop_column("files_sent_copy")
