"""Host: bookmarks that belong to postkit users.

Revision ID: host_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "host_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("host",)
# postkit's tables must exist first: the foreign key below points at postkit_users.
depends_on: str | Sequence[str] | None = "postkit_0001"


def upgrade() -> None:
    op.create_table(
        "host_bookmarks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["postkit_users.id"],
            name="fk_host_bookmarks_user_id_postkit_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_host_bookmarks"),
    )
    op.create_index("ix_host_bookmarks_user_id", "host_bookmarks", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_host_bookmarks_user_id", table_name="host_bookmarks")
    op.drop_table("host_bookmarks")
