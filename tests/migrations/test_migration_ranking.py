"""postkit_0006 (down-votes, ranks, edit history) on a database that already holds posts and
votes, on SQLite and PostgreSQL, standalone and composed into a host's history: the counters
are recounted from the votes table, the ranks are exactly postkit.ranking's, and the downgrade
removes what it added while keeping every post's score."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from postkit.db import create_engine_for, normalize_database_url
from postkit.migrations import downgrade, upgrade
from postkit.ranking import rank_scores
from tests.support.databases import POSTKIT_HEAD, run_sql, table_names

HOSTAPP = Path(__file__).resolve().parent / "hostapp"

USERS = 6
# post id -> the weights of its votes (cast by users 1, 2, ...): zero and negative weights
# were allowed by vote_weight before down-votes existed.
VOTES = {1: [1, 1, 1], 2: [3, 1], 3: [], 4: [0], 5: [-2, 1], 6: [1] * USERS}
DRIFTED = 2  # this post's stored vote_count is wrong before the upgrade: it is recounted


def seed(url: str) -> None:
    statements = [
        *(
            f"INSERT INTO postkit_users (id, email, username, password_hash) "
            f"VALUES ({n}, 'u{n}@example.com', 'u{n}', 'x')"
            for n in range(1, USERS + 1)
        ),
        *(
            f"INSERT INTO postkit_posts (id, title, content, owner_id, created_at, updated_at, "
            f"vote_count) VALUES ({post}, 't{post}', 'c', 1, '2026-0{post}-1{post} 10:2{post}:00', "
            f"'2026-0{post}-1{post} 10:2{post}:00', {sum(weights) + (5 if post == DRIFTED else 0)})"
            for post, weights in VOTES.items()
        ),
        *(
            f"INSERT INTO postkit_votes (user_id, post_id, weight) VALUES ({user}, {post}, {w})"
            for post, weights in VOTES.items()
            for user, w in enumerate(weights, start=1)
        ),
    ]
    run_sql(url, *statements)


def posts_after(url: str) -> dict[int, Any]:
    rows = run_sql(
        url,
        "SELECT id, created_at, vote_count, upvotes, downvotes, hot_rank, best_rank, "
        "controversial_rank, edited_at FROM postkit_posts ORDER BY id",
    )
    return {row[0]: row for row in rows}


def as_utc(value: Any) -> datetime:
    """A created_at as read back raw: SQLite gives naive UTC text, asyncpg an aware datetime."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def assert_backfilled(url: str) -> None:
    posts = posts_after(url)
    assert set(posts) == set(VOTES)
    for post_id, weights in VOTES.items():
        _, created_at, score, up, down, hot, best, controversial, edited_at = posts[post_id]
        assert (score, up, down) == (sum(weights), len(weights), 0), post_id
        expected = rank_scores(
            score=sum(weights),
            upvotes=len(weights),
            downvotes=0,
            created_at=as_utc(created_at),
        )
        assert (hot, best, controversial) == (
            expected["hot_rank"],
            expected["best_rank"],
            expected["controversial_rank"],
        ), post_id
        assert edited_at is None
    directions = run_sql(url, "SELECT DISTINCT direction FROM postkit_votes")
    assert [tuple(row) for row in directions] == [(1,)]


def columns(url: str, table: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine_for(normalize_database_url(url))
        try:
            async with engine.connect() as connection:
                found = await connection.run_sync(lambda c: inspect(c).get_columns(table))
                return {column["name"] for column in found}
        finally:
            await engine.dispose()

    return asyncio.run(read())


NEW_POST_COLUMNS = {
    "upvotes",
    "downvotes",
    "hot_rank",
    "best_rank",
    "controversial_rank",
    "edited_at",
}


def test_upgrade_recounts_and_ranks_exactly_and_downgrades(empty_database_url):
    url = empty_database_url
    upgrade(url, "postkit_0005")
    seed(url)
    upgrade(url)
    assert_backfilled(url)
    assert "postkit_post_revisions" in table_names(url)

    # A down-vote and an edit made after the upgrade...
    run_sql(
        url,
        "INSERT INTO postkit_votes (user_id, post_id, weight, direction) VALUES (6, 5, -1, -1)",
        "UPDATE postkit_posts SET vote_count = vote_count - 1, downvotes = 1 WHERE id = 5",
        "INSERT INTO postkit_post_revisions (post_id, title, content, published) "
        "VALUES (1, 'old', 'c', true)",
    )
    downgrade(url, "postkit_0005")
    assert not NEW_POST_COLUMNS & columns(url, "postkit_posts")
    assert "direction" not in columns(url, "postkit_votes")
    assert "postkit_post_revisions" not in table_names(url)
    # ...leave every score as it was: the down-vote stays a vote of weight -1.
    scores = run_sql(
        url,
        "SELECT p.id, p.vote_count, coalesce(sum(v.weight), 0) FROM postkit_posts p "
        "LEFT JOIN postkit_votes v ON v.post_id = p.id GROUP BY p.id, p.vote_count ORDER BY p.id",
    )
    assert [(row[0], row[1]) for row in scores] == [(row[0], row[2]) for row in scores]
    assert {row[0]: row[1] for row in scores}[5] == -2

    upgrade(url)
    assert columns(url, "postkit_posts") >= NEW_POST_COLUMNS


def test_upgrade_on_a_database_without_votes_or_posts(empty_database_url):
    upgrade(empty_database_url, "postkit_0005")
    upgrade(empty_database_url)
    assert posts_after(empty_database_url) == {}
    downgrade(empty_database_url, "postkit_0005")
    upgrade(empty_database_url)


def test_composed_into_a_hosts_history(empty_database_url, monkeypatch):
    monkeypatch.setenv("HOST_DATABASE_URL", empty_database_url)
    config = Config(str(HOSTAPP / "alembic.ini"))
    command.upgrade(config, "postkit_0005")
    command.upgrade(config, "host@head")
    seed(empty_database_url)
    command.upgrade(config, "heads")
    assert_backfilled(empty_database_url)
    command.check(config)
    command.downgrade(config, "postkit_0005")
    assert not NEW_POST_COLUMNS & columns(empty_database_url, "postkit_posts")
    command.upgrade(config, "heads")
    rows = run_sql(empty_database_url, "SELECT version_num FROM alembic_version")
    assert POSTKIT_HEAD in {row[0] for row in rows}
