"""Query plans at scale (PostgreSQL only): 100k posts and 1M votes, seeded in SQL, then EXPLAIN
of the very statements the posts service builds. No page may scan posts or votes sequentially:
the feed and sort=top walk their (key, id) indexes, search uses the trigram GIN indexes, and no
read touches the votes table at all (it reads the ``vote_count`` counter)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from postkit import PostKit, PostKitSettings
from postkit.migrations import upgrade_async
from postkit.models import User
from postkit.services import posts as post_service
from tests.support.api import TEST_SECRET
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

POSTS = 100_000
VOTES = 1_000_000
USERS = 1_000

TRIGRAM_INDEXES = {
    "ix_postkit_posts_title_trgm": "title",
    "ix_postkit_posts_content_trgm": "content",
}

VOTE_FOREIGN_KEYS = {
    "fk_postkit_votes_post_id_postkit_posts": (
        "FOREIGN KEY (post_id) REFERENCES postkit_posts (id) ON DELETE CASCADE"
    ),
    "fk_postkit_votes_user_id_postkit_users": (
        "FOREIGN KEY (user_id) REFERENCES postkit_users (id) ON DELETE CASCADE"
    ),
}

SEED = [
    f"""INSERT INTO postkit_users (email, username, password_hash)
        SELECT 'user' || g || '@example.com', 'user' || g, 'not-a-hash'
        FROM generate_series(1, {USERS}) AS g""",
    # Bulk-building the trigram indexes after the load is far faster than maintaining them row
    # by row; they are rebuilt below with the migration's definition.
    *(f"DROP INDEX {name}" for name in TRIGRAM_INDEXES),
    # One post in ten is a draft; authors rotate through the users; one post per second.
    # Every post gets 10 of the votes below, so its counter starts at 10 (all up-votes). The
    # ranks only need a realistic spread for the planner: hot grows with time, best and
    # controversial take many distinct values.
    f"""INSERT INTO postkit_posts
            (title, content, published, created_at, updated_at, owner_id, vote_count, upvotes,
             hot_rank, best_rank, controversial_rank)
        SELECT 'Post ' || md5(g::text),
               'Body ' || md5((g * 7)::text) || ' ' || md5((g * 13)::text),
               g % 10 <> 0,
               timestamptz '2026-01-01' + g * interval '1 second',
               timestamptz '2026-01-01' + g * interval '1 second',
               (g % {USERS}) + 1,
               10,
               10,
               1 + (31536000 + g) / 45000.0 + (g % 13) / 10.0,
               (g * 7919 % 10007) / 10007.0,
               (g::bigint * 104729 % 1009) / 100.0
        FROM generate_series(1, {POSTS}) AS g""",
    *(
        f"CREATE INDEX {name} ON postkit_posts USING gin ({column} gin_trgm_ops)"
        for name, column in TRIGRAM_INDEXES.items()
    ),
    # Likewise the votes' secondary index and foreign keys (row-by-row key checks dominate a 1M
    # row load); they come back with the migration's names and are validated in bulk.
    "DROP INDEX ix_postkit_votes_post_id",
    *(f"ALTER TABLE postkit_votes DROP CONSTRAINT {name}" for name in VOTE_FOREIGN_KEYS),
    # User u votes on posts k*100 + (u % 100) + 1 for k in 0..999: 1000 distinct posts each,
    # and every post gets exactly 10 votes.
    f"""INSERT INTO postkit_votes (user_id, post_id, weight)
        SELECT (g / 1000) + 1, ((g % 1000) * 100) + ((g / 1000) % 100) + 1, 1
        FROM generate_series(0, {VOTES - 1}) AS g""",
    "CREATE INDEX ix_postkit_votes_post_id ON postkit_votes (post_id)",
    *(
        f"ALTER TABLE postkit_votes ADD CONSTRAINT {name} {definition}"
        for name, definition in VOTE_FOREIGN_KEYS.items()
    ),
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
        print(f"seeded {POSTS} posts and {VOTES} votes in {time.monotonic() - started:.1f}s")
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def seeded_url() -> Iterator[str]:
    """A database of its own, migrated and seeded once for the module, dropped afterwards."""
    require_postgres("query plans at 100k posts and 1M votes")
    url = create_postgres_database("postkit_plans")
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


async def explain(connection: AsyncConnection, statement: Any) -> str:
    """EXPLAIN the statement exactly as SQLAlchemy sends it to asyncpg (same SQL, same binds)."""
    compiled = statement.compile(dialect=connection.dialect)
    names = compiled.positiontup or []
    parameters = tuple(compiled.params[name] for name in names)
    result = await connection.exec_driver_sql(f"EXPLAIN {compiled}", parameters)
    plan = "\n".join(row[0] for row in result.all())
    print(f"\n{compiled}\n{plan}")  # shown with pytest -s
    return plan


def assert_no_sequential_scan(plan: str) -> None:
    assert "Seq Scan on postkit_posts" not in plan, plan
    assert "postkit_votes" not in plan, plan


RANK_CURSORS = {"hot": (701.5, 50_000), "best": (0.5, 50_000), "controversial": (5.0, 50_000)}
"""A cursor position half-way down each ranked feed."""
SEEDED_FROM = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
"""The first seeded post's creation time (one post per second after it)."""


@pytest.fixture(scope="module")
def reader() -> User:
    return User(id=7, username="user7", email="user7@example.com")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("feed page", {}),
        ("deep feed page", {"skip": 200}),
        ("cursor page", {"after": (datetime.fromisoformat("2026-01-01T12:00:00+00:00"), 43_200)}),
        ("search page", {"search": "c0ffe"}),
        ("search with a percent", {"search": "50%_off"}),
        ("top page", {"sort": "top"}),
        ("top cursor page", {"sort": "top", "after": (10, 50_000)}),
        *(
            (f"{sort} {kind}", {"sort": sort, **options})
            for sort, after in RANK_CURSORS.items()
            for kind, options in (
                ("page", {}),
                ("cursor page", {"after": after}),
                ("search page", {"search": "c0ffe"}),
                ("deep page", {"skip": 200}),
            )
        ),
    ],
)
async def test_feed_pages_use_indexes(seeded_kit, reader, name, options):
    statement = post_service.feed_statement(reader_id=reader.id, limit=11, **options)
    async with seeded_kit.db.engine.connect() as connection:
        plan = await explain(connection, statement)
    assert_no_sequential_scan(plan)
    if "search" in options:
        assert "_trgm" in plan, plan
    elif options.get("sort") in RANK_CURSORS:
        assert f"ix_postkit_posts_{options['sort']}_rank_id" in plan, plan
    elif options.get("sort") == "top":
        assert "ix_postkit_posts_vote_count_id" in plan, plan
    else:
        assert "ix_postkit_posts_created_at_id" in plan, plan


@pytest.mark.parametrize(
    ("name", "since_seconds"),
    [
        # The windows of sort=top at the seeded spread (one post per second for 28 hours):
        # the last hour, the last day, and one reaching back past the first post.
        ("top, last hour", POSTS - 3_600),
        ("top, last day", POSTS - 86_400),
        ("top, everything in the window", -1),
    ],
)
@pytest.mark.parametrize("paged", [False, True])
async def test_top_windows_use_indexes(seeded_kit, reader, name, since_seconds, paged):
    from datetime import timedelta

    since = SEEDED_FROM + timedelta(seconds=since_seconds)
    after = (10, POSTS - 100) if paged else None
    statement = post_service.feed_statement(
        reader_id=reader.id, limit=11, sort="top", since=since, after=after
    )
    async with seeded_kit.db.engine.connect() as connection:
        plan = await explain(connection, statement)
    assert_no_sequential_scan(plan)
    assert "ix_postkit_posts_vote_count_id" in plan or "ix_postkit_posts_created_at_id" in plan


async def test_anonymous_feed_uses_the_index(seeded_kit):
    statement = post_service.feed_statement(reader_id=None, limit=11)
    async with seeded_kit.db.engine.connect() as connection:
        plan = await explain(connection, statement)
    assert_no_sequential_scan(plan)
    assert "ix_postkit_posts_created_at_id" in plan


async def test_single_post_uses_the_primary_key(seeded_kit, reader):
    statement = post_service.post_statement(54_321, reader_id=reader.id)
    async with seeded_kit.db.engine.connect() as connection:
        plan = await explain(connection, statement)
    assert_no_sequential_scan(plan)
    assert "pk_postkit_posts" in plan, plan


async def test_seeded_counts_are_what_the_feed_shows(seeded_kit, reader):
    """The counter the plans rely on matches the votes table, and a page reads it back."""
    statement = post_service.feed_statement(reader_id=reader.id, limit=3, sort="top")
    async with seeded_kit.db.engine.connect() as connection:
        rows = (await connection.execute(statement)).all()
        total = await connection.scalar(text("SELECT sum(vote_count) FROM postkit_posts"))
    assert total == VOTES
    assert [row.vote_count for row in rows] == [10, 10, 10]
