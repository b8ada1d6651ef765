"""Test databases on SQLite and PostgreSQL.

PostgreSQL comes from ``POSTKIT_TEST_POSTGRES_URL`` (a server URL whose user may create
databases, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``). Without it the PostgreSQL
half of the suite is left out (see tests/conftest.py); under ``CI=true`` that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from postkit.migrations import upgrade

POSTGRES_ENV = "POSTKIT_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]
INITIAL_TABLES = frozenset(
    {
        "postkit_login_attempts",
        "postkit_refresh_tokens",
        "postkit_auth_sessions",
        "postkit_votes",
        "postkit_posts",
        "postkit_users",
    }
)
"""The tables of postkit's first revision, postkit_0001 (later revisions add the others)."""
POSTKIT_TABLES = sorted(
    {
        *INITIAL_TABLES,
        "postkit_rate_limits",
        "postkit_account_tokens",
        "postkit_comments",
        "postkit_comment_votes",
        "postkit_comment_revisions",
        "postkit_post_revisions",
    }
)
"""Every table postkit's migrations create."""


# --- The PostgreSQL server ----------------------------------------------------------------------


def postgres_server_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    """``url`` as a plain ``postgresql://`` DSN asyncpg accepts (optionally another database)."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin_execute(sql: str) -> None:
    server = postgres_server_url()
    assert server is not None
    connection = await asyncpg.connect(asyncpg_dsn(server))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def create_postgres_database(prefix: str = "postkit_test") -> str:
    """Create a fresh, empty database on the test server and return its URL."""
    server = postgres_server_url()
    assert server is not None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    return asyncpg_dsn(server, name)


def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def require_postgres(what: str) -> None:
    """Skip (or, under CI, fail) when no PostgreSQL server is configured."""
    if postgres_server_url() is not None:
        return
    reason = f"PostgreSQL skipped: {POSTGRES_ENV} is not set ({what})"
    if in_ci():
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests", pytrace=False)
    pytest.skip(reason)


# --- Databases for tests ------------------------------------------------------------------------


@contextlib.contextmanager
def migrated_database(backend: str, directory: Path, prefix: str = "postkit_test") -> Iterator[str]:
    """A database migrated to head, dropped afterwards: a SQLite file in ``directory``, or a new
    database on the PostgreSQL test server."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / f'{prefix}.db'}"
        upgrade(url)
        yield url
        return
    url = create_postgres_database(prefix)
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


@contextlib.contextmanager
def empty_database(backend: str, directory: Path) -> Iterator[str]:
    """A brand-new database with no tables at all (migration tests)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'empty.db'}"
        return
    url = create_postgres_database("postkit_empty")
    try:
        yield url
    finally:
        drop_postgres_database(url)


async def truncate_postkit_tables(url: str) -> None:
    """Empty postkit's tables of a PostgreSQL database (the schema and version stay)."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(f"TRUNCATE {', '.join(POSTKIT_TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


# --- Looking inside a database (migration and CLI tests) ----------------------------------------


def table_names(url: str) -> set[str]:
    """The names of the tables that exist in the database at ``url`` right now."""
    from sqlalchemy import inspect

    from postkit.db import create_engine_for, normalize_database_url

    async def read() -> set[str]:
        engine = create_engine_for(normalize_database_url(url))
        try:
            async with engine.connect() as connection:
                return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def run_sql(url: str, *statements: str) -> list[Any]:
    """Run SQL statements in one transaction (SQLite with foreign keys on); return the last rows."""
    from sqlalchemy import text

    from postkit.db import create_engine_for, normalize_database_url

    async def run() -> list[Any]:
        engine = create_engine_for(normalize_database_url(url))
        rows: list[Any] = []
        try:
            async with engine.begin() as connection:
                for statement in statements:
                    result = await connection.execute(text(statement))
                    rows = list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()
        return rows

    return asyncio.run(run())


def _postkit_scripts() -> Any:
    from alembic.script import ScriptDirectory

    from postkit.migrations.runner import alembic_config

    return ScriptDirectory.from_config(alembic_config())


POSTKIT_HEAD: str = _postkit_scripts().get_current_head()
"""postkit's head revision, read from its migration scripts: tests compare with it rather than
with a revision id that the next migration would make stale."""
POSTKIT_REVISIONS = frozenset(script.revision for script in _postkit_scripts().walk_revisions())
"""Every revision postkit ships."""
