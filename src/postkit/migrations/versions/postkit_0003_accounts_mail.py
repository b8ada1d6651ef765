"""Account mail: users' email_verified_at, and the tokens mailed for password reset,
email verification and email change.

Revision ID: postkit_0003
Revises: postkit_0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from postkit.models import UTCDateTime

revision: str = "postkit_0003"
# postkit_0002 (rate limits) is being written on another branch; re-chain onto it on merge.
down_revision: str | Sequence[str] | None = "postkit_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: SQLite adds it in place (batch mode rebuilds only when it must).
    with op.batch_alter_table("postkit_users") as batch:
        batch.add_column(sa.Column("email_verified_at", UTCDateTime(), nullable=True))
    op.create_table(
        "postkit_account_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["postkit_users.id"],
            name="fk_postkit_account_tokens_user_id_postkit_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_postkit_account_tokens"),
    )
    op.create_index("ix_postkit_account_tokens_user_id", "postkit_account_tokens", ["user_id"])
    op.create_index(
        "ix_postkit_account_tokens_purpose_email",
        "postkit_account_tokens",
        ["purpose", "email"],
    )


def downgrade() -> None:
    op.drop_index("ix_postkit_account_tokens_purpose_email", table_name="postkit_account_tokens")
    op.drop_index("ix_postkit_account_tokens_user_id", table_name="postkit_account_tokens")
    op.drop_table("postkit_account_tokens")
    with op.batch_alter_table("postkit_users") as batch:
        batch.drop_column("email_verified_at")
