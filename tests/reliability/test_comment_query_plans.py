"""Comment query plans at scale (PostgreSQL only): 100k comments on 1000 posts, seeded in SQL,
then EXPLAIN of the very statements the comment service builds. No page scans the comments
sequentially: top-level pages (``parent_id IS NULL``, a partial index) and reply pages walk the
index of their sort in order, keyset cursors included, and a level of nested replies reads that
index per parent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from postkit import PostKit, PostKitSettings
from postkit.migrations import upgrade_async
from postkit.services import comments as comment_service
from tests.reliability.test_query_plans import explain
from tests.support.api import TEST_SECRET
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

USERS = 1_000
POSTS = 1_000
COMMENTS = 100_000
TOP_LEVEL = 30_000  # comments 1..30000 are top-level; comment g > 30000 replies to g - 30000

SEED = [
    f"""INSERT INTO postkit_users (email, username, password_hash)
        SELECT 'user' || g || '@example.com', 'user' || g, 'not-a-hash'
        FROM generate_series(1, {USERS}) AS g""",
    f"""INSERT INTO postkit_posts (title, content, owner_id, created_at, updated_at)
        SELECT 'Post ' || g, 'Body', (g % {USERS}) + 1,
               timestamptz '2026-01-01' + g * interval '1 second',
               timestamptz '2026-01-01' + g * interval '1 second'
        FROM generate_series(1, {POSTS}) AS g""",
    # Half the comments (the even ones) are on post 1, a hot thread of 50k; comment g is else
    # on post (g % 1000) + 1. Its parent g - 30000 is on the same post.
    f"""INSERT INTO postkit_comments
            (post_id, parent_id, author_id, body, depth, created_at, updated_at, score,
             upvotes, downvotes, reply_count, hot_rank, best_rank, controversial_rank)
        SELECT CASE WHEN g % 2 = 0 THEN 1 ELSE (g % {POSTS}) + 1 END,
               CASE WHEN g > {TOP_LEVEL} THEN g - {TOP_LEVEL} END,
               (g % {USERS}) + 1,
               'Comment ' || md5(g::text),
               1 + (g - 1) / {TOP_LEVEL},
               timestamptz '2026-02-01' + g * interval '1 second',
               timestamptz '2026-02-01' + g * interval '1 second',
               g % 50, g % 50, 0,
               CASE WHEN g <= {COMMENTS - TOP_LEVEL} THEN 1 ELSE 0 END,
               0, (g % 97) / 97.0, 0
        FROM generate_series(1, {COMMENTS}) AS g""",
    "ANALYZE",
]


async def _seed(url: str) -> None:
    await upgrade_async(url)
    connection = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        started = time.monotonic()
        for statement in SEED:
            await connection.execute(statement)
        print(f"seeded {COMMENTS} comments in {time.monotonic() - started:.1f}s")
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def seeded_url() -> Iterator[str]:
    require_postgres("comment query plans at 100k comments")
    url = create_postgres_database("postkit_comment_plans")
    try:
        asyncio.run(_seed(url))
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
async def seeded_kit(seeded_url: str) -> AsyncIterator[PostKit]:
    kit = PostKit(
        PostKitSettings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=seeded_url,
            secret_key=TEST_SECRET,
            discover_plugins=False,
        )
    )
    try:
        yield kit
    finally:
        await kit.db.dispose()


async def explain_replies(connection: AsyncConnection, statement: Any) -> str:
    """EXPLAIN a statement with an expanding IN list, its (integer) values written inline."""
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    result = await connection.exec_driver_sql(f"EXPLAIN {compiled}")
    plan = "\n".join(row[0] for row in result.all())
    print(f"\n{compiled}\n{plan}")  # shown with pytest -s
    return plan


KEYS = {"new": "created_at", "top": "score", "best": "best_rank"}
AFTER: dict[str, Any] = {
    "new": datetime(2026, 2, 1, 10, tzinfo=timezone.utc),
    "top": 25,
    "best": 0.5,
}


@pytest.mark.parametrize("sort", ["new", "top", "best"])
@pytest.mark.parametrize("parent_id", [None, 2], ids=["top-level", "replies"])
@pytest.mark.parametrize("cursor", [False, True], ids=["first", "cursor"])
async def test_the_hot_threads_pages_walk_the_sorts_index(seeded_kit, sort, parent_id, cursor):
    statement = comment_service.comment_page_statement(
        post_id=1,
        limit=11,
        sort=sort,
        parent_id=parent_id,
        after=(AFTER[sort], 50_000) if cursor else None,
    )
    async with seeded_kit.db.engine.connect() as connection:
        plan = await explain(connection, statement)
    assert "Seq Scan on postkit_comments" not in plan, plan
    kind = "top" if parent_id is None else "replies"
    assert f"ix_postkit_comments_{kind}_{KEYS[sort]}" in plan, plan
    assert "Sort" not in plan.split("\n")[1], plan  # the index gives the order: no sort step


@pytest.mark.parametrize("sort", ["new", "top", "best"])
async def test_a_small_threads_page_uses_an_index(seeded_kit, sort):
    statement = comment_service.comment_page_statement(post_id=7, limit=11, sort=sort)
    async with seeded_kit.db.engine.connect() as connection:
        plan = await explain(connection, statement)
    assert "Seq Scan on postkit_comments" not in plan, plan


@pytest.mark.parametrize("sort", ["new", "top", "best"])
async def test_a_level_of_nested_replies_uses_an_index(seeded_kit, sort):
    # Ten top-level comments of the hot thread (ids 2, 4, ...): their replies, three each.
    parents = [2 * k for k in range(1, 11)]
    statement = comment_service.replies_statement(
        post_id=1, parent_ids=parents, replies=3, sort=sort
    )
    async with seeded_kit.db.engine.connect() as connection:
        plan = await explain_replies(connection, statement)
        rows = (await connection.execute(statement)).all()
    assert "Seq Scan on postkit_comments" not in plan, plan
    assert {row.parent_id for row in rows} == set(parents)
