"""Message bodies apart from status rows: ``messages.raw`` and ``messages.merge_fields``
move to ``message_bodies`` (one row per message, written once), so that status updates
rewrite a narrow row instead of ~5 KB.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None

MESSAGE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as messages.id


def upgrade() -> None:
    op.create_table(
        "message_bodies",
        sa.Column("message_id", MESSAGE_ID, nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("merge_fields", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"],
            name=op.f("fk_message_bodies_message_id_messages"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_message_bodies")),
    )  # fmt: skip
    op.execute(
        "INSERT INTO message_bodies (message_id, raw, merge_fields) "
        "SELECT id, raw, merge_fields FROM messages "
        "WHERE raw IS NOT NULL OR merge_fields IS NOT NULL"
    )
    # A plain DROP COLUMN (SQLite >= 3.35, PostgreSQL): no copy of the table, whose drop
    # would cascade to the rows that reference it.
    op.execute("ALTER TABLE messages DROP COLUMN raw")
    op.execute("ALTER TABLE messages DROP COLUMN merge_fields")


def downgrade() -> None:
    op.add_column("messages", sa.Column("raw", sa.LargeBinary(), nullable=True))
    op.add_column("messages", sa.Column("merge_fields", sa.JSON(), nullable=True))
    for column in ("raw", "merge_fields"):
        op.execute(
            f"UPDATE messages SET {column} = (SELECT b.{column} FROM message_bodies b "
            "WHERE b.message_id = messages.id)"
        )
    op.drop_table("message_bodies")
