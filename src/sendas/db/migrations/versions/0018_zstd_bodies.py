"""Message bodies packed with Zstandard (``sendas.db.packing``) instead of zlib: no change
to the schema, as zlib rows still read; going back rewrites every Zstandard body as a zlib
one, the only packing 0017's code reads.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

from sendas.db.packing import as_zlib, rewrite_bodies

revision = "0018"
down_revision: str | None = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # rows written from now on are Zstandard frames; zlib ones read as they are


def downgrade() -> None:
    rewrite_bodies(op.get_bind(), as_zlib)
