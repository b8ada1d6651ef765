"""Seed a fresh PostgreSQL database for the benchmark, deterministically and in bulk.

The schema comes from postkit's own migrations (``postkit.migrations.upgrade``); the rows come
from ``generate_series`` and integer arithmetic only, so two runs at one scale produce the same
database. Every seeded user shares one password hash, made with postkit's own
:class:`~postkit.security.PasswordHasher` at the cost factor the servers use, so any of them can
log in (the login storm rotates through them).

    python bench/seed.py --scale small          # standalone, prints timings
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg
from sqlalchemy.engine import make_url

from postkit.migrations import upgrade
from postkit.ranking import rank_scores
from postkit.security import PasswordHasher

__all__ = [
    "BENCH_PASSWORD",
    "BENCH_USERNAME",
    "SCALES",
    "Scale",
    "add_votes",
    "asyncpg_dsn",
    "create_database",
    "search_word",
    "seed",
]

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "postkit_bench"
BENCH_USERNAME = "bench"
BENCH_EMAIL = "bench@bench.example.com"
BENCH_PASSWORD = "bench-password-0123456789"
# Every post is created at BASE_TIME + id seconds: newest first is highest id first.
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)
DRAFT_EVERY = 50  # every 50th post is an unpublished draft, so the visibility filter has work
TITLE_WORDS = 3
CONTENT_WORDS = 24
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "si", "ta", "vo", "ze", "pa"]
WORD_COUNT = 200


@dataclass(frozen=True)
class Scale:
    """How many rows to seed. ``votes_low`` is the vote count of the feed-vs-votes comparison."""

    name: str
    users: int
    posts: int
    votes: int
    votes_low: int

    def votes_per_user(self, total: int) -> int:
        if total % self.users:
            raise ValueError(f"{total} votes must be a multiple of {self.users} users")
        per_user = total // self.users
        # Vote k of a user lands on a post shifted by 1009k: distinct while 1009(k-1) < posts.
        if (per_user - 1) * 1009 >= self.posts:
            raise ValueError(f"{per_user} votes per user is too many for {self.posts} posts")
        return per_user


SCALES = {
    "reference": Scale("reference", users=10_000, posts=100_000, votes=1_000_000, votes_low=10_000),
    "small": Scale("small", users=1_000, posts=10_000, votes=10_000, votes_low=1_000),
}


def words() -> list[str]:
    """The deterministic vocabulary of titles and contents: 200 three-syllable words."""
    n = len(SYLLABLES)
    vocabulary = []
    for index in range(WORD_COUNT):
        code = index * 7 + 3  # spread over the 1,000 combinations
        vocabulary.append(
            SYLLABLES[code // (n * n) % n] + SYLLABLES[code // n % n] + SYLLABLES[code % n]
        )
    return vocabulary


def search_word() -> str:
    """A word found in about one post in ten (title or content): the search benchmark's term."""
    return words()[17]


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def create_database(server_url: str, name: str) -> str:
    """Drop ``name`` if it exists, create it empty, and return its URL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"refusing database name {name!r}")
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return asyncpg_dsn(server_url, name)


def _word_expr(position: str) -> str:
    """SQL picking a vocabulary word from an integer expression (the array is bound as $1)."""
    return f"($1::text[])[1 + (({position}) % {WORD_COUNT})]"


async def _seed_rows(url: str, scale: Scale, password_hash: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        vocabulary = words()
        async with connection.transaction():
            await connection.execute(
                """
                INSERT INTO postkit_users (id, email, username, password_hash, created_at)
                SELECT i, 'user' || i || '@bench.example.com', 'user' || i, $1,
                       $2::timestamptz + i * interval '1 second'
                FROM generate_series(1, $3::int) AS i
                """,
                password_hash,
                BASE_TIME,
                scale.users,
            )
            await connection.execute(
                """
                INSERT INTO postkit_users (id, email, username, password_hash, created_at)
                VALUES ($1, $2, $3, $4, $5)
                """,
                scale.users + 1,
                BENCH_EMAIL,
                BENCH_USERNAME,
                password_hash,
                BASE_TIME,
            )
            title_words = [_word_expr(f"i * {31 + 17 * k} + {k * 7}") for k in range(TITLE_WORDS)]
            content_words = [
                _word_expr(f"i * {13 + 11 * k} + {k * 101}") for k in range(CONTENT_WORDS)
            ]
            title_sql = "'Post ' || i || ': ' || " + " || ' ' || ".join(title_words)
            content_sql = " || ' ' || ".join(content_words) + " || '.'"
            await connection.execute(
                f"""
                INSERT INTO postkit_posts
                    (id, title, content, published, created_at, updated_at, owner_id, vote_count)
                SELECT i, {title_sql}, {content_sql}, i % {DRAFT_EVERY} <> 0,
                       $2::timestamptz + i * interval '1 second',
                       $2::timestamptz + i * interval '1 second',
                       1 + (i * 7) % $3::int, 0
                FROM generate_series(1, $4::int) AS i
                """,
                vocabulary,
                BASE_TIME,
                scale.users,
                scale.posts,
            )
            # Every seeded user has logged in once: the auth query runs against a sessions
            # table of realistic size (its plan on a near-empty table would be a seq scan).
            await connection.execute(
                """
                INSERT INTO postkit_auth_sessions (id, user_id, created_at)
                SELECT 'seed-session-' || i, i, $1::timestamptz + i * interval '1 second'
                FROM generate_series(1, $2::int) AS i
                """,
                BASE_TIME,
                scale.users,
            )
            for table in ("postkit_users", "postkit_posts"):
                await connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
    finally:
        await connection.close()


async def add_votes(url: str, scale: Scale, *, start: int, stop: int) -> None:
    """Insert votes number ``start`` to ``stop - 1`` and recompute every post's counters
    (``vote_count``, ``upvotes``, ``downvotes``: every seeded vote is an up-vote of weight 1) and
    its ranks, with postkit's own ranking functions.

    Vote ``n = u + users * k`` is user ``u + 1`` voting on post ``1 + (37u + 1009k) mod posts``:
    for one user the posts differ for every ``k`` (1009k < posts), so the primary key holds, and
    the votes spread over all posts. Calling it again with a higher range extends the same set.
    """
    per_user_start = scale.votes_per_user(start) if start else 0
    per_user_stop = scale.votes_per_user(stop)
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(
                """
                INSERT INTO postkit_votes (user_id, post_id, weight, created_at)
                SELECT u + 1, 1 + (u * 37 + k * 1009) % $1::int, 1,
                       $2::timestamptz + (u + k) * interval '1 second'
                FROM generate_series($3::int, $4::int) AS k, generate_series(0, $5::int) AS u
                """,
                scale.posts,
                BASE_TIME,
                per_user_start,
                per_user_stop - 1,
                scale.users - 1,
            )
            await connection.execute(
                "UPDATE postkit_posts SET vote_count = 0, upvotes = 0, downvotes = 0 "
                "WHERE vote_count <> 0 OR upvotes <> 0 OR downvotes <> 0"
            )
            await connection.execute(
                """
                UPDATE postkit_posts AS p SET vote_count = s.total, upvotes = s.up
                FROM (SELECT post_id, sum(weight)::int AS total, count(*)::int AS up
                      FROM postkit_votes GROUP BY post_id) AS s
                WHERE p.id = s.post_id
                """
            )
            await _rank_posts(connection)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


async def _rank_posts(connection: asyncpg.Connection) -> None:
    """Store every post's ranks, computed from its counters as the vote service would."""
    rows = await connection.fetch(
        "SELECT id, vote_count, upvotes, downvotes, created_at FROM postkit_posts"
    )
    records = []
    for row in rows:
        ranks = rank_scores(
            score=row["vote_count"],
            upvotes=row["upvotes"],
            downvotes=row["downvotes"],
            created_at=row["created_at"],
        )
        records.append(
            (row["id"], ranks["hot_rank"], ranks["best_rank"], ranks["controversial_rank"])
        )
    await connection.execute(
        "CREATE TEMPORARY TABLE seed_ranks (id int PRIMARY KEY, hot float8, best float8, "
        "controversial float8) ON COMMIT DROP"
    )
    await connection.copy_records_to_table("seed_ranks", records=records)
    await connection.execute(
        "UPDATE postkit_posts AS p SET hot_rank = r.hot, best_rank = r.best, "
        "controversial_rank = r.controversial FROM seed_ranks AS r WHERE p.id = r.id"
    )


def seed(
    server_url: str,
    scale: Scale,
    *,
    database: str = DEFAULT_DATABASE,
    votes: int | None = None,
    bcrypt_rounds: int = 12,
    log: bool = True,
) -> str:
    """Create ``database`` afresh, migrate it and fill it; return its URL.

    ``votes`` defaults to the scale's full count; :func:`add_votes` can extend it later.
    """
    started = time.perf_counter()
    url = asyncio.run(create_database(server_url, database))
    upgrade(url)
    migrated = time.perf_counter()
    password_hash = PasswordHasher(bcrypt_rounds).context.hash(BENCH_PASSWORD)
    asyncio.run(_seed_rows(url, scale, password_hash))
    rows = time.perf_counter()
    total = scale.votes if votes is None else votes
    asyncio.run(add_votes(url, scale, start=0, stop=total))
    done = time.perf_counter()
    if log:
        print(
            f"seed: {scale.users:,} users, {scale.posts:,} posts, {total:,} votes in "
            f"{done - started:.1f} s (migrate {migrated - started:.1f} s, users+posts "
            f"{rows - migrated:.1f} s, votes+counts+analyze {done - rows:.1f} s)",
            flush=True,
        )
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POSTKIT_BENCH_POSTGRES_URL")
        or os.environ.get("POSTKIT_TEST_POSTGRES_URL")
        or DEFAULT_SERVER_URL,
    )
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    args = parser.parse_args()
    url = seed(
        args.postgres_url,
        SCALES[args.scale],
        database=args.database,
        bcrypt_rounds=args.bcrypt_rounds,
    )
    print(url)


if __name__ == "__main__":
    main()
