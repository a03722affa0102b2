"""Form letters' bodies packed with their letter's templates as a Zstandard dictionary
(``sendas.db.packing.LETTER``): no change to the schema, as other rows still read; going
back rewrites each such body as a plain Zstandard one, the packing 0020's code reads.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from alembic import op

from sendas.db.packing import unpack_letters

revision = "0021"
down_revision: str | None = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # letters rendered from now on are packed with their dictionary


def downgrade() -> None:
    unpack_letters(op.get_bind())
