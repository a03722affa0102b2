"""Tokens go only to the provider's servers: the admin's server overrides in the sign-in
app registration, and the servers fixed on an alias at sign-in.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("smtp_server", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("imap_server", sa.String(length=300), nullable=True))
    # Aliases signed in before this revision have none: they are bound to the provider's own.
    with op.batch_alter_table("aliases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oauth_servers", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("aliases", schema=None) as batch_op:
        batch_op.drop_column("oauth_servers")
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_column("imap_server")
        batch_op.drop_column("smtp_server")
