"""Start-up: several workers with ``auto_migrate`` starting at once against an empty PostgreSQL
database all come up, and the schema is migrated exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.api import register
from tests.support.databases import (
    POSTKIT_TABLES,
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.support.ports import free_port
from tests.support.servers import (
    gunicorn_command,
    serve,
    server_env,
    uvicorn_command,
    wait_until_serving,
)

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    require_postgres("concurrent start-up migrations")
    url = create_postgres_database("postkit_startup")
    try:
        yield url
    finally:
        drop_postgres_database(url)


async def _schema_state(url: str) -> tuple[list[str], list[str]]:
    connection = await asyncpg.connect(url)
    try:
        versions = [
            row["version_num"]
            for row in await connection.fetch("SELECT version_num FROM postkit_alembic_version")
        ]
        tables = [
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'postkit_%'"
            )
        ]
        return versions, sorted(tables)
    finally:
        await connection.close()


def _assert_migrated_once(url: str) -> None:
    versions, tables = asyncio.run(_schema_state(url))
    assert len(versions) == 1, versions
    assert set(POSTKIT_TABLES) | {"postkit_alembic_version"} <= set(tables)


def _assert_clean_log(log: str) -> None:
    assert "Traceback" not in log, log
    assert not re.search(r"\bERROR\b|\[ERROR\]", log), log


async def _exercise(urls: list[str]) -> None:
    """Register on one server and read back through every one: they share one schema."""
    async with httpx.AsyncClient(base_url=urls[0], timeout=30) as client:
        account = await register(client)
    for url in urls:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            me = await client.get("/users/me", headers=account.headers)
            assert me.status_code == 200, me.text
            assert me.json()["id"] == account.id


def test_gunicorn_workers_migrate_an_empty_database_once(
    empty_postgres: str, tmp_path: Path
) -> None:
    port = free_port()
    env = server_env(empty_postgres, auto_migrate=True)
    with serve(gunicorn_command(port, 3), env=env, log_dir=tmp_path, port=port) as server:
        # Every worker must have come up (each ran the lifespan, hence the migration).
        for _ in range(300):
            if server.log.count("Application startup complete") >= 3:
                break
            time.sleep(0.1)
        assert server.log.count("Application startup complete") == 3, server.log
        asyncio.run(_exercise([server.url]))
        _assert_migrated_once(empty_postgres)
        _assert_clean_log(server.log)
        assert server.alive


def test_separate_processes_started_together_migrate_once(
    empty_postgres: str, tmp_path: Path
) -> None:
    env = server_env(empty_postgres, auto_migrate=True)
    ports = [free_port() for _ in range(3)]
    with contextlib.ExitStack() as stack:
        # Start all three before waiting for any, so their migrations overlap.
        servers = [
            stack.enter_context(
                serve(uvicorn_command(port), env=env, log_dir=tmp_path, port=port, wait=False)
            )
            for port in ports
        ]
        for server in servers:
            wait_until_serving(server)
        asyncio.run(_exercise([server.url for server in servers]))
        _assert_migrated_once(empty_postgres)
        for server in servers:
            _assert_clean_log(server.log)
            assert server.alive
