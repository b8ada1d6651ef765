"""Seed a fresh PostgreSQL database or SQLite file for the benchmark, deterministically, in bulk.

The schema comes from postkit's own migrations (``postkit.migrations.upgrade``); the rows come
from ``generate_series`` and integer arithmetic only, so two runs at one scale produce the same
database. Every seeded user shares one password hash, made with postkit's own
:class:`~postkit.security.PasswordHasher` at the cost factor the servers use, so any of them can
log in (the login storm rotates through them).

:func:`seed_sqlite` fills a SQLite file with the same rows (same formulas, evaluated in Python
and inserted with ``sqlite3`` ``executemany`` in one transaction).

    python bench/seed.py --scale small          # standalone, prints timings
    python bench/seed.py --scale small --sqlite /tmp/bench.db
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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
    "seed_sqlite",
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


# --- SQLite ---------------------------------------------------------------------------------------


def _title(i: int, vocabulary: list[str]) -> str:
    """``_seed_rows``'s title of post ``i`` (the SQL array is 1-based, the list 0-based)."""
    picked = (vocabulary[(i * (31 + 17 * k) + k * 7) % WORD_COUNT] for k in range(TITLE_WORDS))
    return f"Post {i}: " + " ".join(picked)


def _content(i: int, vocabulary: list[str]) -> str:
    picked = (vocabulary[(i * (13 + 11 * k) + k * 101) % WORD_COUNT] for k in range(CONTENT_WORDS))
    return " ".join(picked) + "."


def _vote_rows(scale: Scale, stamps: list[str]) -> Iterator[tuple[int, int, int, str]]:
    """``add_votes``'s votes 0 to ``scale.votes - 1``, user by user (primary-key order)."""
    per_user = scale.votes_per_user(scale.votes)
    for u in range(scale.users):
        for k in range(per_user):
            yield u + 1, 1 + (u * 37 + k * 1009) % scale.posts, 1, stamps[u + k]


def seed_sqlite(path: Path, scale: Scale, *, bcrypt_rounds: int = 12, log: bool = True) -> str:
    """Create the SQLite file ``path`` afresh with the rows :func:`seed` puts in PostgreSQL, at
    the scale's full vote count; return its URL (``sqlite:///...``, as a host would write it).

    The schema comes from postkit's migrations; timestamps are written as SQLAlchemy writes them
    on SQLite (naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``), booleans as 0/1, and each post's
    ``vote_count`` is counted from the very votes inserted.
    """
    started = time.perf_counter()
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    upgrade(f"sqlite+aiosqlite:///{path}")
    migrated = time.perf_counter()
    password_hash = PasswordHasher(bcrypt_rounds).context.hash(BENCH_PASSWORD)
    vocabulary = words()
    per_user = scale.votes_per_user(scale.votes)
    base = BASE_TIME.replace(tzinfo=None)
    stamps = [
        (base + timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S.%f")
        for n in range(max(scale.posts, scale.users + per_user) + 2)
    ]
    counts = Counter(post_id for _, post_id, _, _ in _vote_rows(scale, stamps))
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO postkit_users (id, email, username, password_hash, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (i, f"user{i}@bench.example.com", f"user{i}", password_hash, stamps[i])
                for i in range(1, scale.users + 1)
            ]
            + [(scale.users + 1, BENCH_EMAIL, BENCH_USERNAME, password_hash, stamps[0])],
        )

        def post_row(i: int) -> tuple[Any, ...]:
            ranks = rank_scores(
                score=counts[i],
                upvotes=counts[i],
                downvotes=0,
                created_at=base + timedelta(seconds=i),
            )
            return (
                i,
                _title(i, vocabulary),
                _content(i, vocabulary),
                int(i % DRAFT_EVERY != 0),
                stamps[i],
                stamps[i],
                1 + (i * 7) % scale.users,
                counts[i],
                counts[i],  # every seeded vote is an up-vote of weight 1
                ranks["hot_rank"],
                ranks["best_rank"],
                ranks["controversial_rank"],
            )

        connection.executemany(
            "INSERT INTO postkit_posts (id, title, content, published, created_at, updated_at,"
            " owner_id, vote_count, upvotes, hot_rank, best_rank, controversial_rank)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (post_row(i) for i in range(1, scale.posts + 1)),
        )
        connection.executemany(
            "INSERT INTO postkit_auth_sessions (id, user_id, created_at) VALUES (?, ?, ?)",
            ((f"seed-session-{i}", i, stamps[i]) for i in range(1, scale.users + 1)),
        )
        connection.executemany(
            "INSERT INTO postkit_votes (user_id, post_id, weight, direction, created_at)"
            " VALUES (?, ?, ?, 1, ?)",
            _vote_rows(scale, stamps),
        )
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    done = time.perf_counter()
    if log:
        print(
            f"seed: SQLite {path.name}: {scale.users:,} users, {scale.posts:,} posts, "
            f"{scale.votes:,} votes in {done - started:.1f} s "
            f"(migrate {migrated - started:.1f} s, rows {done - migrated:.1f} s)",
            flush=True,
        )
    return f"sqlite:///{path}"


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
    parser.add_argument("--sqlite", type=Path, default=None, help="seed this SQLite file instead")
    args = parser.parse_args()
    if args.sqlite is not None:
        print(seed_sqlite(args.sqlite, SCALES[args.scale], bcrypt_rounds=args.bcrypt_rounds))
        return
    url = seed(
        args.postgres_url,
        SCALES[args.scale],
        database=args.database,
        bcrypt_rounds=args.bcrypt_rounds,
    )
    print(url)


if __name__ == "__main__":
    main()
