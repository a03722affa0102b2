"""Message bodies packed at rest (``sendas.db.packing``): no change to the schema, as
plain rows still read; going back unpacks every packed body, which older code would send
as it is.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendas.db.packing import TAG, unpack

revision = "0017"
down_revision: str | None = "0016"
branch_labels = None
depends_on = None

CHUNK = 500  # bodies held in memory at once


def upgrade() -> None:
    pass  # rows written from now on are packed; older ones read as they are


def downgrade() -> None:
    conn = op.get_bind()
    read = sa.text(
        "SELECT message_id, raw FROM message_bodies WHERE message_id > :after "
        "AND raw IS NOT NULL ORDER BY message_id LIMIT :n"
    )
    write = sa.text("UPDATE message_bodies SET raw = :raw WHERE message_id = :id")
    after = 0
    while rows := conn.execute(read, {"after": after, "n": CHUNK}).all():
        after = rows[-1][0]
        plain = [{"id": i, "raw": unpack(bytes(raw))} for i, raw in rows if raw[:1] == TAG]
        if plain:
            conn.execute(write.bindparams(sa.bindparam("raw", type_=sa.LargeBinary)), plain)
