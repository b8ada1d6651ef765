"""postkit's bundled Alembic migrations and the functions that run them.

``upgrade(url)`` is for scripts and the CLI; ``await upgrade_async(url)`` is for code that already
runs an event loop (the kit's lifespan uses it when ``auto_migrate`` is set). On PostgreSQL every
run holds a transaction-scoped advisory lock, so workers that start together migrate one at a time
and all succeed.

The history carries the branch label ``postkit`` and records itself in ``postkit_alembic_version``,
so it never collides with a host's own Alembic history in the same database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from postkit.db import normalize_database_url

__all__ = [
    "BRANCH_LABEL",
    "OPTIONAL_INDEXES",
    "SCRIPT_LOCATION",
    "VERSIONS_DIR",
    "VERSION_LOCATION",
    "VERSION_TABLE",
    "adopt_standalone_history",
    "alembic_config",
    "downgrade",
    "downgrade_async",
    "run_alembic",
    "upgrade",
    "upgrade_async",
    "upgrade_composed",
]

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

The models cannot declare them portably, so autogenerate must ignore them: postkit's own
``env.py`` does, and a host composing postkit's history into its own should do the same.
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

    On PostgreSQL an advisory lock taken first serialises concurrent runs.
    """
    normalized = normalize_database_url(url)
    config = config or alembic_config(normalized)
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

    def _run(connection: Connection) -> Any:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        try:
            return operation(config, *args, **kwargs)
        finally:
            config.attributes.pop("connection", None)

    try:
        async with engine.begin() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite alters a table by copying it and dropping the original; with foreign
                # keys enforced, that DROP would cascade-delete every row that references the
                # table (all posts of all users). Enforcement is off while migrating, and the
                # references are checked once the migration is done.
                await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            result = await connection.run_sync(_run)
            if sqlite:
                violations = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if violations:
                    raise CommandError(
                        f"migration left {len(violations)} broken foreign key reference(s), "
                        f"first in table {violations[0][0]!r}; the transaction is rolled back"
                    )
            return result
    finally:
        await engine.dispose()


def _unique_statement_name() -> str:
    return f"__postkit_migration_{uuid.uuid4().hex}__"


def adopt_standalone_history(
    config: Config, *, version_table: str = "alembic_version"
) -> list[str]:
    """Carry a database migrated standalone over to a host's composed history.

    A database first migrated by postkit alone (``postkit db upgrade``, ``upgrade()``, the kit's
    ``auto_migrate``) records postkit's revision in ``postkit_alembic_version``. A host history
    that composes postkit's versions does not read that table, so it would create postkit's
    tables a second time. Called inside :func:`run_alembic` before upgrading (as
    :func:`upgrade_composed` does), this stamps the recorded revision into the host's version
    table and drops postkit's own, so exactly one history governs the database from then on.

    Nothing happens when there is no standalone record, or when the host's history already has
    revisions (it is then the one in charge).

    :param config: the host's Alembic config; :func:`run_alembic` has put the connection in it.
    :param version_table: the host's version table (Alembic's default unless its env.py says
        otherwise).
    :returns: the revisions adopted (empty when there was nothing to do).
    """
    connection: Connection = config.attributes["connection"]
    if not inspect(connection).has_table(VERSION_TABLE):
        return []
    host = MigrationContext.configure(connection, opts={"version_table": version_table})
    if host.get_current_heads():
        return []
    recorded = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
    adopted = [str(row[0]) for row in recorded]
    if adopted:
        command.stamp(config, adopted)
    connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    return adopted


def upgrade_composed(config: Config, revision: str = "heads") -> None:
    """A host's composed upgrade, for :func:`run_alembic`: adopt a standalone history, then
    upgrade every branch (the host's and postkit's) to ``revision``::

        await run_alembic(url, upgrade_composed, "heads", config=host_config)
    """
    adopt_standalone_history(config)
    command.upgrade(config, revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Apply postkit's migrations up to ``revision`` from inside a running event loop."""
    await run_alembic(url, command.upgrade, _postkit_revision(revision))


async def downgrade_async(url: str, revision: str) -> None:
    """Revert postkit's migrations down to ``revision`` (``"base"`` removes every table)."""
    await run_alembic(url, command.downgrade, _postkit_revision(revision))


def upgrade(url: str, revision: str = "head") -> None:
    """Apply postkit's migrations up to ``revision`` (for scripts; not inside an event loop)."""
    _refuse_running_loop("upgrade", "upgrade_async")
    asyncio.run(upgrade_async(url, revision))


def downgrade(url: str, revision: str) -> None:
    """Revert postkit's migrations down to ``revision`` (for scripts; not inside an event loop)."""
    _refuse_running_loop("downgrade", "downgrade_async")
    asyncio.run(downgrade_async(url, revision))


def _refuse_running_loop(name: str, alternative: str) -> None:
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
