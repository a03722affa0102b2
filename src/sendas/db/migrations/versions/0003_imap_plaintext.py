"""IMAP accounts: allow_plaintext_auth, the explicit consent to log in without TLS.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("imap_accounts") as batch_op:
        batch_op.add_column(
            sa.Column(
                "allow_plaintext_auth", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("imap_accounts") as batch_op:
        batch_op.drop_column("allow_plaintext_auth")
