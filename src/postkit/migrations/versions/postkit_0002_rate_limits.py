"""Rate limit counters: the table ``postkit_rate_limits`` (see :mod:`postkit.ratelimit`).

Revision ID: postkit_0002
Revises: postkit_0001
Create Date: 2026-12-01

A plain CREATE TABLE and CREATE INDEX, which SQLite runs as they are (batch mode is only needed
to alter a table there); constraint names are written out as the naming convention in
``postkit.models`` makes them, so autogenerate finds no drift.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "postkit_0002"
down_revision: str | Sequence[str] | None = "postkit_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "postkit_rate_limits",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_postkit_rate_limits"),
    )
    op.create_index("ix_postkit_rate_limits_expires_at", "postkit_rate_limits", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_postkit_rate_limits_expires_at", table_name="postkit_rate_limits")
    op.drop_table("postkit_rate_limits")
