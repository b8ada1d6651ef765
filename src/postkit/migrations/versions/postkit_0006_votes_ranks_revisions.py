"""Down-votes, ranked feeds and edit history.

- ``postkit_votes`` gains ``direction`` (1 up, -1 down; every existing vote is an up-vote).
- ``postkit_posts`` gains ``upvotes``, ``downvotes``, the stored ranks ``hot_rank``,
  ``best_rank`` and ``controversial_rank`` (each with its ``(rank, id)`` index, for keyset
  paging) and ``edited_at``.
- ``postkit_post_revisions`` holds the previous versions of edited posts.

Applied in place on a populated database, and exact: ``vote_count`` (the score), ``upvotes`` and
``downvotes`` are recounted from the votes table, and the ranks are computed from the recount by
:mod:`postkit.ranking` itself (a host's ``rank_score`` plugin is not consulted here: its ranks
take over as votes arrive).

Staying readable on PostgreSQL: postkit migrates in one transaction under a transaction-scoped
advisory lock (what makes concurrent upgrades safe, also through PgBouncer), so ``CREATE INDEX
CONCURRENTLY``, which refuses to run inside a transaction, is not available. Instead the slow
part runs before anything blocks a reader: writes to posts and votes are held (``SHARE`` locks,
which readers pass) while the recount and the ranks are computed into a temporary table; only
then do the ``ALTER TABLE`` statements take their exclusive lock, for the last, short part (one
``UPDATE ... FROM`` and three index builds).

Downgrading drops what this added. Down-votes cast meanwhile stay as votes of negative weight,
so the score each post shows is unchanged.

Revision ID: postkit_0006
Revises: postkit_0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from postkit.models import UTCDateTime
from postkit.ranking import rank_scores

revision: str = "postkit_0006"
down_revision: str | Sequence[str] | None = "postkit_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RANK_INDEXES = {
    "ix_postkit_posts_hot_rank_id": "hot_rank",
    "ix_postkit_posts_best_rank_id": "best_rank",
    "ix_postkit_posts_controversial_rank_id": "controversial_rank",
}
STAGING = "postkit_0006_staging"
STAGED_COLUMNS = ("vote_count", "upvotes", "downvotes", *RANK_INDEXES.values())

_posts = sa.table(
    "postkit_posts", sa.column("id", sa.Integer()), sa.column("created_at", UTCDateTime())
)
_votes = sa.table(
    "postkit_votes", sa.column("post_id", sa.Integer()), sa.column("weight", sa.Integer())
)
_staging = sa.table(
    STAGING,
    sa.column("id", sa.Integer()),
    *(sa.column(name, sa.Integer()) for name in ("vote_count", "upvotes", "downvotes")),
    *(sa.column(name, sa.Double()) for name in RANK_INDEXES.values()),
)
INSERT_BATCH = 5_000


def _stage_counts(connection: sa.Connection, postgresql: bool) -> None:
    """Recount every post's votes (all of them up-votes so far) and compute its ranks into a
    temporary table. Reads only: readers and this run do not block each other."""
    on_commit = " ON COMMIT DROP" if postgresql else ""
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {STAGING} (id INTEGER PRIMARY KEY, vote_count INTEGER NOT NULL, "
        "upvotes INTEGER NOT NULL, downvotes INTEGER NOT NULL, hot_rank DOUBLE PRECISION NOT "
        "NULL, best_rank DOUBLE PRECISION NOT NULL, controversial_rank DOUBLE PRECISION NOT NULL)"
        f"{on_commit}"
    )
    tally = (
        sa.select(
            _votes.c.post_id,
            sa.func.sum(_votes.c.weight).label("score"),
            sa.func.count().label("upvotes"),
        )
        .group_by(_votes.c.post_id)
        .subquery()
    )
    rows = connection.execute(
        sa.select(
            _posts.c.id,
            _posts.c.created_at,
            sa.func.coalesce(tally.c.score, 0),
            sa.func.coalesce(tally.c.upvotes, 0),
        ).select_from(_posts.outerjoin(tally, tally.c.post_id == _posts.c.id))
    )
    batch: list[dict[str, object]] = []
    for post_id, created_at, score, upvotes in rows:
        score, upvotes = int(score), int(upvotes)
        ranks = rank_scores(score=score, upvotes=upvotes, downvotes=0, created_at=created_at)
        batch.append(
            {"id": post_id, "vote_count": score, "upvotes": upvotes, "downvotes": 0, **ranks}
        )
        if len(batch) >= INSERT_BATCH:
            connection.execute(sa.insert(_staging), batch)
            batch = []
    if batch:
        connection.execute(sa.insert(_staging), batch)


def _apply_counts(postgresql: bool) -> None:
    # Every name in these statements is a constant of this module (S608: nothing user-supplied).
    if postgresql:
        assignments = ", ".join(f"{name} = s.{name}" for name in STAGED_COLUMNS)
        op.execute(
            f"UPDATE postkit_posts AS p SET {assignments} FROM {STAGING} AS s WHERE p.id = s.id"  # noqa: S608
        )
        return
    assignments = ", ".join(
        f"{name} = (SELECT s.{name} FROM {STAGING} AS s WHERE s.id = postkit_posts.id)"  # noqa: S608
        for name in STAGED_COLUMNS
    )
    op.execute(f"UPDATE postkit_posts SET {assignments} WHERE id IN (SELECT id FROM {STAGING})")  # noqa: S608
    op.execute(f"DROP TABLE {STAGING}")


def upgrade() -> None:
    connection = op.get_bind()
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        # Hold writes (not reads) from here on, so the recount is the final count. Votes first:
        # a vote locks its row in votes, then its post.
        op.execute("LOCK TABLE postkit_votes IN SHARE MODE")
        op.execute("LOCK TABLE postkit_posts IN SHARE MODE")
    _stage_counts(connection, postgresql)

    # From here on, the short part that readers of posts wait for on PostgreSQL.
    with op.batch_alter_table("postkit_posts") as batch:
        batch.add_column(sa.Column("edited_at", UTCDateTime(), nullable=True))
        for name in ("upvotes", "downvotes"):
            batch.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))
        for name in RANK_INDEXES.values():
            batch.add_column(sa.Column(name, sa.Double(), server_default="0", nullable=False))
    _apply_counts(postgresql)
    for index, column in RANK_INDEXES.items():
        op.create_index(index, "postkit_posts", [column, "id"])
    with op.batch_alter_table("postkit_votes") as batch:
        batch.add_column(
            sa.Column("direction", sa.SmallInteger(), server_default="1", nullable=False)
        )
    op.create_table(
        "postkit_post_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("replaced_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["postkit_posts.id"],
            name="fk_postkit_post_revisions_post_id_postkit_posts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_postkit_post_revisions"),
    )
    op.create_index(
        "ix_postkit_post_revisions_post_id_id", "postkit_post_revisions", ["post_id", "id"]
    )
    if postgresql:
        # Statistics for the new columns now, so the first ranked feed is planned on them.
        op.execute("ANALYZE postkit_posts")


def downgrade() -> None:
    op.drop_index("ix_postkit_post_revisions_post_id_id", table_name="postkit_post_revisions")
    op.drop_table("postkit_post_revisions")
    with op.batch_alter_table("postkit_votes") as batch:
        batch.drop_column("direction")
    for index in RANK_INDEXES:
        op.drop_index(index, table_name="postkit_posts")
    with op.batch_alter_table("postkit_posts") as batch:
        for name in reversed(RANK_INDEXES.values()):
            batch.drop_column(name)
        batch.drop_column("downvotes")
        batch.drop_column("upvotes")
        batch.drop_column("edited_at")
