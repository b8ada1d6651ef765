"""Bookmarks: a user keeps a post for later.

Revision ID: socialapp_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "socialapp_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("socialapp",)
# postkit's tables must exist first: the bookmarks table points at them.
depends_on: str | Sequence[str] | None = "postkit_0001"


def upgrade() -> None:
    op.create_table(
        "socialapp_bookmarks",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["postkit_users.id"],
            name="fk_socialapp_bookmarks_user_id_postkit_users",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["postkit_posts.id"],
            name="fk_socialapp_bookmarks_post_id_postkit_posts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "post_id", name="pk_socialapp_bookmarks"),
    )
    op.create_index("ix_socialapp_bookmarks_post_id", "socialapp_bookmarks", ["post_id"])


def downgrade() -> None:
    op.drop_index("ix_socialapp_bookmarks_post_id", table_name="socialapp_bookmarks")
    op.drop_table("socialapp_bookmarks")
