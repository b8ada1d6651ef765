"""Alembic environment of the reference app: postkit's tables and the app's, in one history.

Run by :func:`app.migrate.migrate` (which hands over an open connection) or by the ``alembic``
command (which opens its own engine on ``DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.models import metadata as app_metadata
from postkit.db import normalize_database_url
from postkit.migrations import OPTIONAL_INDEXES
from postkit.migrations import VERSION_TABLE as POSTKIT_VERSION_TABLE
from postkit.models import metadata as postkit_metadata

config = context.config


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave alone what autogenerate cannot model: postkit's own version table (when postkit
    was once migrated standalone) and its optional pg_trgm indexes."""
    if type_ == "table" and name == POSTKIT_VERSION_TABLE:
        return False
    return not (type_ == "index" and name in OPTIONAL_INDEXES)


def run_with_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=[postkit_metadata, app_metadata],
        include_object=include_object,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with_connection)
            await connection.commit()
    finally:
        await engine.dispose()


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.settings import AppSettings

    return normalize_database_url(AppSettings().database_url)


if context.is_offline_mode():
    context.configure(
        url=database_url(),
        target_metadata=[postkit_metadata, app_metadata],
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    run_with_connection(shared)
else:
    asyncio.run(run_with_own_engine(database_url()))
