"""Message bodies packed at rest (``sendas.db.packing``): no change to the schema, as
plain rows still read; going back unpacks every packed body, which older code would send
as it is.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

from sendas.db.packing import as_plain, rewrite_bodies

revision = "0017"
down_revision: str | None = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # rows written from now on are packed; older ones read as they are


def downgrade() -> None:
    rewrite_bodies(op.get_bind(), as_plain)
