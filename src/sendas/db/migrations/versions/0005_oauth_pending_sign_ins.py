"""Pending "Sign in with Google/Microsoft" requests (one-time state, PKCE verifier, nonce).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_pending_sign_ins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("alias_id", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("code_verifier_enc", sa.Text(), nullable=False),
        sa.Column("nonce_enc", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=1000), nullable=False),
        sa.Column("imap", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_oauth_pending_sign_ins_user_id_users"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["alias_id"], ["aliases.id"],
            name=op.f("fk_oauth_pending_sign_ins_alias_id_aliases"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_pending_sign_ins")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_pending_sign_ins_state_hash")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_oauth_pending_sign_ins_user_id"), "oauth_pending_sign_ins", ["user_id"]
    )
    op.create_index(
        op.f("ix_oauth_pending_sign_ins_expires_at"), "oauth_pending_sign_ins", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_table("oauth_pending_sign_ins")
