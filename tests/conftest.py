"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``POSTKIT_TEST_POSTGRES_URL`` (a server URL whose user may create databases,
e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``). Each test run creates its own database,
migrates it once, empties it after every test and drops it at the end. Without the variable the
PostgreSQL half is skipped, visibly; under ``CI=true`` that skip is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from postkit import PostKit, PostKitSettings
from postkit.migrations import upgrade

POSTGRES_ENV = "POSTKIT_TEST_POSTGRES_URL"
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
TEST_PASSWORD = "correct horse battery staple"
BACKENDS = ["sqlite", "postgresql"]
POSTKIT_TABLES = [
    "postkit_account_tokens",
    "postkit_login_attempts",
    "postkit_refresh_tokens",
    "postkit_auth_sessions",
    "postkit_votes",
    "postkit_posts",
    "postkit_users",
]

_postgres_skips: list[str] = []


# --- PostgreSQL server helpers ------------------------------------------------------------------


def postgres_server_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin_execute(sql: str) -> None:
    server = postgres_server_url()
    assert server is not None
    connection = await asyncpg.connect(_asyncpg_dsn(server))
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
    return _asyncpg_dsn(server, name)


def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def require_postgres(what: str) -> None:
    """Skip (or, under CI, fail) when no PostgreSQL server is configured."""
    if postgres_server_url() is not None:
        return
    reason = f"PostgreSQL skipped: {POSTGRES_ENV} is not set ({what})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests", pytrace=False)
    _postgres_skips.append(what)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _postgres_skips:
        terminalreporter.write_sep(
            "!",
            f"PostgreSQL was SKIPPED ({', '.join(sorted(set(_postgres_skips)))}): "
            f"set {POSTGRES_ENV} to run them",
            yellow=True,
            bold=True,
        )


# --- Databases ----------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database kind the test runs on; every test using a database runs on both."""
    name: str = request.param
    if name == "postgresql":
        require_postgres("database tests")
    return name


@pytest.fixture(scope="session")
def migrated_template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per run: a SQLite file to copy, or the run's PG database."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        yield url
        return
    url = create_postgres_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


async def _truncate(url: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(f"TRUNCATE {', '.join(POSTKIT_TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


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
    asyncio.run(_truncate(migrated_template))


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A brand-new database with no tables at all (migration tests)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    url = create_postgres_database("postkit_empty")
    try:
        yield url
    finally:
        drop_postgres_database(url)


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


@dataclass
class KitClient:
    """An httpx client bound to one app built around one kit."""

    http: httpx.AsyncClient
    kit: PostKit
    app: FastAPI

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)


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


@dataclass
class TestUser:
    id: int
    email: str
    username: str
    password: str
    access_token: str
    refresh_token: str
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def new_user() -> Callable[..., Awaitable[TestUser]]:
    """Register a user through the API and log them in: ``await new_user(client)``."""

    async def make(
        client: KitClient | httpx.AsyncClient,
        *,
        email: str | None = None,
        username: str | None = None,
        password: str = TEST_PASSWORD,
        prefix: str = "",
    ) -> TestUser:
        suffix = uuid.uuid4().hex[:8]
        email = email or f"user_{suffix}@example.com"
        body: dict[str, Any] = {"email": email, "password": password}
        body["username"] = username or f"user_{suffix}"
        created = await client.post(f"{prefix}/users", json=body)
        assert created.status_code == 201, created.text
        user = created.json()
        logged_in = await client.post(
            f"{prefix}/login", data={"username": email, "password": password}
        )
        assert logged_in.status_code == 200, logged_in.text
        tokens = logged_in.json()
        return TestUser(
            id=user["id"],
            email=user["email"],
            username=user["username"],
            password=password,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )

    return make


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


async def make_post(client: Any, user: TestUser, **fields: Any) -> dict[str, Any]:
    """Create a post through the API as ``user`` (title and content defaulted); return its JSON."""
    body = {"title": "A title", "content": "Some content"} | fields
    response = await client.post("/posts", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
