"""The host's Alembic environment: one version table for the host's and postkit's branches."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alembic import context
from host_models import HostBase
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from postkit.db import normalize_database_url
from postkit.migrations import OPTIONAL_INDEXES
from postkit.models import metadata as postkit_metadata

config = context.config


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    # postkit creates its trigram search indexes only where PostgreSQL allows it.
    return not (type_ == "index" and name in OPTIONAL_INDEXES)


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        # Both histories, so `alembic check` compares every table the host owns or mounts.
        target_metadata=[HostBase.metadata, postkit_metadata],
        include_object=include_object,
        render_as_batch=True,  # SQLite alters tables by copying them
        # version_table stays the default "alembic_version": it records both branch heads.
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


shared = config.attributes.get("connection")  # handed over by code already inside a loop
if shared is not None:
    run_migrations(shared)
else:
    url = os.environ.get("HOST_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    assert url, "set HOST_DATABASE_URL or sqlalchemy.url"
    asyncio.run(run_async(normalize_database_url(url)))
