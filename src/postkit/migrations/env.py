"""Alembic environment for postkit's bundled history.

Run through :func:`postkit.migrations.run_alembic`, which hands over an open connection; run by the
``alembic`` command with ``sqlalchemy.url`` set, it opens its own async engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from postkit.migrations import OPTIONAL_INDEXES, VERSION_TABLE
from postkit.models import metadata

config = context.config


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Compare only postkit's own tables: a host's tables may share the database."""
    if type_ == "table":
        return bool(name and name.startswith("postkit_") and name != VERSION_TABLE)
    if type_ == "index" and name in OPTIONAL_INDEXES:
        return False
    table = getattr(obj, "table", None)
    if table is not None:
        return bool(table.name.startswith("postkit_"))
    return True


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        compare_type=True,
        include_object=include_object,
        **kwargs,
    )


def run_with_connection(connection: Connection) -> None:
    _configure(connection=connection)
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


if context.is_offline_mode():
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    shared = config.attributes.get("connection")
    if shared is not None:
        run_with_connection(shared)
    else:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("postkit migrations need sqlalchemy.url or a shared connection")
        asyncio.run(run_with_own_engine(url))
