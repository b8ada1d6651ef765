"""Notes get an author: a foreign key to postkit's users.

Revision ID: notes_0002
Revises: notes_0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notes_0002"
down_revision: str | Sequence[str] | None = "notes_0001"
branch_labels: str | Sequence[str] | None = None
# postkit_users must exist first: postkit_0001 creates it. Without this line Alembic may run
# this revision before postkit's, and the foreign key has nothing to point at.
depends_on: str | Sequence[str] | None = "postkit_0001"


def upgrade() -> None:
    # Batch mode: SQLite adds a foreign key by rebuilding the table.
    with op.batch_alter_table("notes") as batch_op:
        batch_op.add_column(sa.Column("author_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_notes_author_id", ["author_id"])
        batch_op.create_foreign_key(
            "fk_notes_author_id_postkit_users",
            "postkit_users",
            ["author_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    # Named constraints are what make this reversible.
    with op.batch_alter_table("notes") as batch_op:
        batch_op.drop_constraint("fk_notes_author_id_postkit_users", type_="foreignkey")
        batch_op.drop_index("ix_notes_author_id")
        batch_op.drop_column("author_id")
