"""Comments: threaded comments on posts, their votes and their edit history.

- ``postkit_comments``: comments and replies, with their counters (``reply_count``, ``score``,
  ``upvotes``, ``downvotes``) and stored ranking scores, and per sort (``new``, ``top``,
  ``best``) two indexes: ``(post_id, <key>, id)`` for top-level comments (partial) and
  ``(parent_id, <key>, id)`` for replies.
- ``postkit_comment_votes``: one row per user and comment, its signed weight.
- ``postkit_comment_revisions``: the previous body of a comment at each edit.
- ``postkit_posts`` gains ``comment_count`` (server default 0: no post has comments yet, so no
  backfill is needed).

New tables and a column with a constant default: PostgreSQL adds the column without rewriting
the table, and the new indexes are built on empty tables.

Revision ID: postkit_0005
Revises: postkit_0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from postkit.models import UTCDateTime

revision: str = "postkit_0005"
down_revision: str | Sequence[str] | None = "postkit_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SORT_KEYS = ("created_at", "score", "best_rank")  # sort=new, top, best


def _timestamp(name: str, *, nullable: bool = False, default: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        UTCDateTime(),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def _counter(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def _rank(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Float(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "postkit_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("depth", sa.Integer(), server_default="1", nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("edited_at", nullable=True, default=False),
        _timestamp("deleted_at", nullable=True, default=False),
        _counter("score"),
        _counter("upvotes"),
        _counter("downvotes"),
        _counter("reply_count"),
        _rank("hot_rank"),
        _rank("best_rank"),
        _rank("controversial_rank"),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["postkit_posts.id"],
            name="fk_postkit_comments_post_id_postkit_posts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["postkit_comments.id"],
            name="fk_postkit_comments_parent_id_postkit_comments",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["postkit_users.id"],
            name="fk_postkit_comments_author_id_postkit_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_postkit_comments"),
    )
    top_level = sa.text("parent_id IS NULL")
    for key in SORT_KEYS:
        # A post's top-level comments: partial, since PostgreSQL takes no order from an index
        # after an IS NULL condition.
        op.create_index(
            f"ix_postkit_comments_top_{key}",
            "postkit_comments",
            ["post_id", key, "id"],
            postgresql_where=top_level,
            sqlite_where=top_level,
        )
        op.create_index(
            f"ix_postkit_comments_replies_{key}", "postkit_comments", ["parent_id", key, "id"]
        )
    op.create_index("ix_postkit_comments_post_id", "postkit_comments", ["post_id"])
    op.create_index("ix_postkit_comments_author_id", "postkit_comments", ["author_id"])

    op.create_table(
        "postkit_comment_votes",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["postkit_comments.id"],
            name="fk_postkit_comment_votes_comment_id_postkit_comments",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["postkit_users.id"],
            name="fk_postkit_comment_votes_user_id_postkit_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "comment_id", name="pk_postkit_comment_votes"),
    )
    op.create_index("ix_postkit_comment_votes_comment_id", "postkit_comment_votes", ["comment_id"])

    op.create_table(
        "postkit_comment_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.Column("editor_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["postkit_comments.id"],
            name="fk_postkit_comment_revisions_comment_id_postkit_comments",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["postkit_users.id"],
            name="fk_postkit_comment_revisions_editor_id_postkit_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_postkit_comment_revisions"),
    )
    op.create_index(
        "ix_postkit_comment_revisions_comment_id_id",
        "postkit_comment_revisions",
        ["comment_id", "id"],
    )
    op.create_index(
        "ix_postkit_comment_revisions_editor_id", "postkit_comment_revisions", ["editor_id"]
    )

    with op.batch_alter_table("postkit_posts") as batch:
        batch.add_column(
            sa.Column("comment_count", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    op.drop_table("postkit_comment_revisions")
    op.drop_table("postkit_comment_votes")
    op.drop_table("postkit_comments")
    with op.batch_alter_table("postkit_posts") as batch:
        batch.drop_column("comment_count")
