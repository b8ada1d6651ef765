"""postkit's initial schema: users, posts, votes, auth sessions, refresh tokens, login attempts.

Revision ID: postkit_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from postkit.models import UTCDateTime

revision: str = "postkit_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("postkit",)
depends_on: str | Sequence[str] | None = None

TRGM_INDEXES = {
    "ix_postkit_posts_title_trgm": "title",
    "ix_postkit_posts_content_trgm": "content",
}


def _timestamp(name: str, *, nullable: bool = False, default: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        UTCDateTime(),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def upgrade() -> None:
    op.create_table(
        "postkit_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("token_version", sa.Integer(), server_default="0", nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_postkit_users"),
        sa.UniqueConstraint("email", name="uq_postkit_users_email"),
        sa.UniqueConstraint("username", name="uq_postkit_users_username"),
    )
    op.create_table(
        "postkit_posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("published", sa.Boolean(), server_default=sa.true(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("vote_count", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("length(title) >= 1", name="ck_postkit_posts_title_not_empty"),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["postkit_users.id"],
            name="fk_postkit_posts_owner_id_postkit_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_postkit_posts"),
    )
    op.create_index("ix_postkit_posts_owner_id", "postkit_posts", ["owner_id"])
    op.create_index("ix_postkit_posts_created_at_id", "postkit_posts", ["created_at", "id"])
    op.create_index("ix_postkit_posts_vote_count_id", "postkit_posts", ["vote_count", "id"])
    op.create_table(
        "postkit_votes",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["postkit_posts.id"],
            name="fk_postkit_votes_post_id_postkit_posts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["postkit_users.id"],
            name="fk_postkit_votes_user_id_postkit_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "post_id", name="pk_postkit_votes"),
    )
    op.create_index("ix_postkit_votes_post_id", "postkit_votes", ["post_id"])
    op.create_table(
        "postkit_auth_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        _timestamp("revoked_at", nullable=True, default=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["postkit_users.id"],
            name="fk_postkit_auth_sessions_user_id_postkit_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_postkit_auth_sessions"),
    )
    op.create_index("ix_postkit_auth_sessions_user_id", "postkit_auth_sessions", ["user_id"])
    op.create_table(
        "postkit_refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at", default=False),
        _timestamp("used_at", nullable=True, default=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["postkit_auth_sessions.id"],
            name="fk_postkit_refresh_tokens_session_id_postkit_auth_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_postkit_refresh_tokens"),
    )
    op.create_index(
        "ix_postkit_refresh_tokens_session_id", "postkit_refresh_tokens", ["session_id"]
    )
    op.create_table(
        "postkit_login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        _timestamp("attempted_at"),
        sa.PrimaryKeyConstraint("id", name="pk_postkit_login_attempts"),
    )
    op.create_index(
        "ix_postkit_login_attempts_key_attempted_at",
        "postkit_login_attempts",
        ["key", "attempted_at"],
    )
    _create_trigram_indexes()


def _create_trigram_indexes() -> None:
    """On PostgreSQL, index title and content for ILIKE '%term%' search with pg_trgm.

    The extension needs the right to create it; where it is missing and cannot be created, search
    still works, by scanning, and this migration succeeds.
    """
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.exec_driver_sql(
        "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"
    ).scalar()
    if not available:
        try:
            with bind.begin_nested():
                bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except sa.exc.DBAPIError:
            return
    for name, column in TRGM_INDEXES.items():
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON postkit_posts USING gin ({column} gin_trgm_ops)"
        )


def downgrade() -> None:
    op.drop_index("ix_postkit_login_attempts_key_attempted_at", table_name="postkit_login_attempts")
    op.drop_table("postkit_login_attempts")
    op.drop_index("ix_postkit_refresh_tokens_session_id", table_name="postkit_refresh_tokens")
    op.drop_table("postkit_refresh_tokens")
    op.drop_index("ix_postkit_auth_sessions_user_id", table_name="postkit_auth_sessions")
    op.drop_table("postkit_auth_sessions")
    op.drop_index("ix_postkit_votes_post_id", table_name="postkit_votes")
    op.drop_table("postkit_votes")
    for name in TRGM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_index("ix_postkit_posts_vote_count_id", table_name="postkit_posts")
    op.drop_index("ix_postkit_posts_created_at_id", table_name="postkit_posts")
    op.drop_index("ix_postkit_posts_owner_id", table_name="postkit_posts")
    op.drop_table("postkit_posts")
    op.drop_table("postkit_users")
