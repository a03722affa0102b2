"""Bounces: messages found by Message-ID, and what the scanner handled per mailbox.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_message_id", "messages", ["message_id"])
    op.create_table(
        "bounce_mailboxes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("imap_account_id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["imap_account_id"], ["imap_accounts.id"],
            name=op.f("fk_bounce_mailboxes_imap_account_id_imap_accounts"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_mailboxes")),
        sa.UniqueConstraint(
            "imap_account_id", "mailbox", name=op.f("uq_bounce_mailboxes_imap_account_id")
        ),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("bounce_mailboxes")
    op.drop_index("ix_messages_message_id", table_name="messages")
