"""Running postkit's own history: its constants, its config, the connection every run uses.

Every run, standalone or composed, goes through :func:`migration_connection`: one connection,
one transaction, postkit's advisory lock first on PostgreSQL (so workers that start together
migrate one at a time and all succeed) and, on SQLite, foreign keys off while migrating and
checked before the commit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from postkit.urls import normalize_database_url

SCRIPT_LOCATION = "postkit:migrations"
VERSION_LOCATION = "postkit:migrations/versions"
"""postkit's revisions as a package resource, for a host's ``version_locations``."""
VERSIONS_DIR = Path(__file__).resolve().parent / "versions"
"""The directory holding postkit's revision files (for hosts that configure Alembic in code)."""
VERSION_TABLE = "postkit_alembic_version"
BRANCH_LABEL = "postkit"
# pg_advisory_xact_lock key: the bytes "postkit" read as an integer, constant across releases.
ADVISORY_LOCK_KEY = int.from_bytes(b"postkit", "big")
OPTIONAL_INDEXES = frozenset({"ix_postkit_posts_title_trgm", "ix_postkit_posts_content_trgm"})
"""Indexes the migrations create only where the database allows (pg_trgm on PostgreSQL).

The models cannot declare them portably, so autogenerate must ignore them: :func:`run_env`
(postkit's own ``env.py`` and a composing host's) does.
"""
CONNECT_TIMEOUT = 15.0
"""Seconds to wait for the migration connection to PostgreSQL."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` for postkit's history, built in code."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "space")
    if url is not None:
        config.set_main_option("sqlalchemy.url", normalize_database_url(url).replace("%", "%%"))
    return config


async def run_alembic(
    url: str, operation: Callable[..., Any], *args: Any, config: Config | None = None, **kwargs: Any
) -> Any:
    """Run an ``alembic.command`` function on one connection to ``url``, inside one transaction.

    The connection is handed to ``env.py`` as ``config.attributes["connection"]``. On PostgreSQL
    an advisory lock taken first serialises concurrent runs.
    """
    config = config or alembic_config(url)

    def _run(connection: Connection) -> Any:
        config.attributes["connection"] = connection
        try:
            return operation(config, *args, **kwargs)
        finally:
            config.attributes.pop("connection", None)

    async with migration_connection(url) as connection:
        return await connection.run_sync(_run)


@asynccontextmanager
async def migration_connection(url: str) -> AsyncIterator[AsyncConnection]:
    """One connection to ``url`` in one transaction, set up for migrating.

    On PostgreSQL the first statement takes postkit's transaction-scoped advisory lock. On
    SQLite, foreign key enforcement is off while the block runs: SQLite alters a table by copying
    it and dropping the original, and with enforcement on that DROP would cascade-delete every
    row that references the table (all posts of all users). The references are checked once the
    block is done; a broken one rolls everything back.
    """
    normalized = normalize_database_url(url)
    connect_args: dict[str, Any] = {}
    if normalized.startswith("postgresql"):
        connect_args.update(
            # Fail fast on an unreachable server (asyncpg waits 60 s by default).
            timeout=CONNECT_TIMEOUT,
            # No prepared statement outlives its use and every name is unique, so migrations
            # also work through PgBouncer in transaction mode. They run few statements: the
            # caches would buy nothing.
            statement_cache_size=0,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=_unique_statement_name,
        )
    engine = create_async_engine(normalized, poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            yield connection
            if sqlite:
                violations = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if violations:
                    raise CommandError(
                        f"migration left {len(violations)} broken foreign key reference(s), "
                        f"first in table {violations[0][0]!r}; the transaction is rolled back"
                    )
    finally:
        await engine.dispose()


def _unique_statement_name() -> str:
    return f"__postkit_migration_{uuid.uuid4().hex}__"


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Apply postkit's migrations up to ``revision`` from inside a running event loop.

    :raises alembic.util.CommandError: the database is composed into a host's history (use
        :func:`upgrade_composed` or ``alembic upgrade heads`` there).
    """
    await run_alembic(url, _standalone(command.upgrade), _postkit_revision(revision))


async def downgrade_async(url: str, revision: str) -> None:
    """Revert postkit's migrations down to ``revision`` (``"base"`` removes every table)."""
    await run_alembic(url, _standalone(command.downgrade), _postkit_revision(revision))


def _standalone(operation: Callable[..., Any]) -> Callable[..., Any]:
    """``operation``, refused on a database a host's composed history governs: it would create
    postkit's tables a second time, or act on a record nobody reads."""

    def guarded(config: Config, *args: Any) -> Any:
        from postkit.migrations.composed import inspect_history

        history = inspect_history(config.attributes["connection"])
        if history.composed:
            tables = ", ".join(history.other_version_tables)
            raise CommandError(
                f"postkit's tables here belong to a composed Alembic history ({tables}); "
                "migrate with it (`alembic upgrade heads` or postkit.migrations.upgrade_composed) "
                "and turn auto_migrate off"
            )
        return operation(config, *args)

    return guarded


def upgrade(url: str, revision: str = "head") -> None:
    """Apply postkit's migrations up to ``revision`` (for scripts; not inside an event loop)."""
    refuse_running_loop("upgrade", "upgrade_async")
    asyncio.run(upgrade_async(url, revision))


def downgrade(url: str, revision: str) -> None:
    """Revert postkit's migrations down to ``revision`` (for scripts; not inside an event loop)."""
    refuse_running_loop("downgrade", "downgrade_async")
    asyncio.run(downgrade_async(url, revision))


def refuse_running_loop(name: str, alternative: str) -> None:
    """Raise when called inside an event loop: ``name`` would need a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"postkit.migrations.{name}() cannot run inside an event loop; "
        f"use `await postkit.migrations.{alternative}(...)` there"
    )


def _postkit_revision(revision: str) -> str:
    # "head" is unambiguous inside postkit's own history; keep the user's spelling otherwise.
    return revision
