"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``POSTKIT_TEST_POSTGRES_URL`` (see tests/support/databases.py). Each test
run creates its own database, migrates it once, empties it after every test and drops it at the
end. Without the variable the PostgreSQL cases are left out at collection, said in one line;
under ``CI=true`` a missing PostgreSQL is a failure instead.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from postkit import PostKit, PostKitSettings
from tests.support.api import TEST_SECRET, KitClient, sign_up
from tests.support.databases import (
    POSTGRES_ENV,
    empty_database,
    in_ci,
    migrated_database,
    postgres_server_url,
    require_postgres,
    truncate_postkit_tables,
)

# The PostgreSQL half of every database test: left out at collection when no server is set.
POSTGRES = pytest.param("postgresql", marks=pytest.mark.postgres_only)

_left_out: list[pytest.Item] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL server (and outside CI), leave out the PostgreSQL cases up front."""
    if postgres_server_url() is not None or in_ci():
        return
    kept = [item for item in items if item.get_closest_marker("postgres_only") is None]
    _left_out[:] = [item for item in items if item.get_closest_marker("postgres_only")]
    if _left_out:
        config.hook.pytest_deselected(items=_left_out)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _left_out:
        terminalreporter.write_line(
            f"PostgreSQL: {len(_left_out)} tests left out because {POSTGRES_ENV} is not set "
            "(set it to a server URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres)",
            yellow=True,
            bold=True,
        )


# --- Databases ----------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=["sqlite", POSTGRES])
def backend(request: pytest.FixtureRequest) -> str:
    """The database kind the test runs on; every test using a database runs on both."""
    name: str = request.param
    if name == "postgresql":
        require_postgres("database tests")
    return name


@pytest.fixture(scope="session")
def migrated_template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per run: a SQLite file to copy, or the run's PG database."""
    with migrated_database(backend, tmp_path_factory.mktemp("template")) as url:
        yield url


@pytest.fixture
def database_url(backend: str, migrated_template: str, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database for one test."""
    if backend == "sqlite":
        template = Path(make_url(migrated_template).database or "")
        copy = tmp_path / "postkit.db"
        shutil.copyfile(template, copy)
        yield f"sqlite+aiosqlite:///{copy}"
        return
    yield migrated_template
    asyncio.run(truncate_postkit_tables(migrated_template))


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A brand-new database with no tables at all (migration tests)."""
    with empty_database(backend, tmp_path) as url:
        yield url


# --- Apps and clients ---------------------------------------------------------------------------


@pytest.fixture
def settings_factory(database_url: str) -> Callable[..., PostKitSettings]:
    """Build settings for the test's database; keyword arguments override the defaults."""

    def make(**overrides: Any) -> PostKitSettings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "secret_key": TEST_SECRET,
            "bcrypt_rounds": 4,
            "discover_plugins": False,
        }
        values.update(overrides)
        return PostKitSettings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
async def make_client(
    settings_factory: Callable[..., PostKitSettings],
) -> AsyncIterator[Callable[..., Awaitable[KitClient]]]:
    """Build a kit (with ``plugins`` and setting overrides), mount it, start it, return a client.

    ``prefix`` mounts the router under a path; ``raise_app_exceptions=False`` lets a test see a
    real 500 instead of the exception.
    """
    async with AsyncExitStack() as stack:

        async def make(
            *,
            plugins: tuple[object, ...] | list[object] = (),
            prefix: str = "",
            raise_app_exceptions: bool = True,
            **overrides: Any,
        ) -> KitClient:
            kit = PostKit(settings_factory(**overrides), plugins=plugins)
            app = FastAPI(lifespan=kit.lifespan)
            app.include_router(kit.router, prefix=prefix)
            await stack.enter_async_context(app.router.lifespan_context(app))
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(
                        app=app, raise_app_exceptions=raise_app_exceptions
                    ),
                    base_url="http://testserver",
                )
            )
            return KitClient(http=http, kit=kit, app=app)

        yield make


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[KitClient]]) -> KitClient:
    return await make_client()


@pytest.fixture
def new_user() -> Callable[..., Awaitable[Any]]:
    """Register a user through the API and log them in: ``await new_user(client)``."""
    return sign_up
