"""Notes: the app's first table, from before postkit was added.

Revision ID: notes_0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notes_0001"
down_revision: str | Sequence[str] | None = None
# Added when postkit arrived (labels live only in the files, so adding one to a revision that
# is already applied is safe): `--head notes@head` names the app's branch.
branch_labels: str | Sequence[str] | None = ("notes",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notes"),
    )


def downgrade() -> None:
    op.drop_table("notes")
