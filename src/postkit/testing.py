"""A pytest plugin for apps that mount postkit: migrated test databases, the app, clients, users.

Opt in from the host's root ``conftest.py``::

    pytest_plugins = ["postkit.testing"]

or on the command line with ``-p postkit.testing``. Importing this module defines fixtures and
hooks and does nothing else; ``import postkit`` never imports it (nor pytest).

What it provides (see ``docs/testing.md`` for the reference table):

- a database migrated once per test session, with the host's composed Alembic history when the
  ``postkit_alembic_ini`` ini option names it (or the ``postkit_alembic_config`` fixture is
  overridden), otherwise postkit's own history; on SQLite always, and on a PostgreSQL database
  created for the session (and dropped at its end) when a server URL is given with
  ``--postkit-postgres-url``, the ``postkit_postgres_url`` ini option or the
  ``POSTKIT_TEST_POSTGRES_URL`` environment variable. Every test that uses it runs once per
  chosen backend (``--postkit-backends`` / ``postkit_backends``, or the ``postkit_backends``
  marker on one test);
- an empty database per test: a copy of the migrated SQLite file, or the PostgreSQL database
  with every table but the Alembic version tables truncated after the test;
- ``postkit_settings`` and ``postkit_app_factory`` (the host overrides them), the app, its kit,
  an ``httpx.AsyncClient`` with the app's lifespan running, a user factory, a login through
  HTTP, and real access tokens for a user without a login.

Mail: ``postkit_outbox`` swaps the kit's mailer for a :class:`~postkit.mail.MemoryOutbox`, so
a test reads what the app sent (``await postkit_outbox.wait_for(1)``) instead of sending it.

The async fixtures need pytest-asyncio (``pip install "fastapi-postkit[testing]"``); mark the
tests ``@pytest.mark.asyncio`` or set ``asyncio_mode = "auto"``.

(PYTEST_DONT_REWRITE: a conftest may import helpers from here before pytest loads the plugin;
the module has no asserts to rewrite.)
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import pytest_asyncio
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from postkit.dependencies import LOGIN_ROUTE_NAME
from postkit.kit import PostKit
from postkit.mail import MemoryOutbox
from postkit.models import User
from postkit.settings import PostKitSettings

__all__ = [
    "BACKENDS",
    "DEFAULT_PASSWORD",
    "POSTGRES_URL_ENV",
    "TEST_SECRET_KEY",
    "AppFactory",
    "MadeUser",
    "MigratedDatabase",
    "default_app",
    "find_kit",
    "settings_for_tests",
]

POSTGRES_URL_ENV = "POSTKIT_TEST_POSTGRES_URL"
"""The environment variable naming a PostgreSQL server for the tests."""
BACKENDS = ("sqlite", "postgresql")
"""The database kinds the plugin can run a test on."""
TEST_SECRET_KEY = "postkit-testing-secret-key-not-for-production-0123456789"  # noqa: S105
"""The fixed token key of :func:`settings_for_tests`: no warning, stable tokens within a test."""
DEFAULT_PASSWORD = "a test password, long enough"  # noqa: S105
"""The password ``postkit_make_user`` gives an account unless told otherwise."""

AppFactory = Callable[[PostKitSettings], FastAPI]
"""What ``postkit_app_factory`` returns: settings in, an app (not started) out."""

_OPTIONS = pytest.StashKey["_Options"]()


# --- Configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    postgres_url: str | None
    backends: tuple[str, ...]
    keep_tables: frozenset[str]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("postkit", "postkit test databases (postkit.testing)")
    group.addoption(
        "--postkit-postgres-url",
        dest="postkit_postgres_url",
        default=None,
        metavar="URL",
        help=f"a PostgreSQL server whose user may create databases (overrides {POSTGRES_URL_ENV} "
        "and the postkit_postgres_url ini option)",
    )
    group.addoption(
        "--postkit-backends",
        dest="postkit_backends",
        default=None,
        metavar="NAMES",
        help="the databases to run on, comma-separated: sqlite, postgresql (default: sqlite, "
        "and postgresql when a server URL is given)",
    )
    parser.addini(
        "postkit_postgres_url",
        f"a PostgreSQL server URL for the tests ({POSTGRES_URL_ENV} wins over it)",
        default="",
    )
    parser.addini("postkit_backends", "the databases to run on: sqlite, postgresql", default="")
    parser.addini(
        "postkit_alembic_ini",
        "the host's alembic.ini, relative to the ini file (default: postkit's own history)",
        default="",
    )
    parser.addini(
        "postkit_keep_tables",
        "PostgreSQL tables not emptied between tests (reference data your migrations insert)",
        type="linelist",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postkit_backends(*names): run this test only on these databases (sqlite, postgresql)",
    )
    postgres_url = (
        config.getoption("postkit_postgres_url", None)
        or os.environ.get(POSTGRES_URL_ENV)
        or str(config.getini("postkit_postgres_url"))
        or None
    )
    chosen = config.getoption("postkit_backends", None) or str(config.getini("postkit_backends"))
    if chosen:
        backends = _parse_backends(chosen, "--postkit-backends / postkit_backends")
        if "postgresql" in backends and postgres_url is None:
            raise pytest.UsageError(
                "postkit.testing: postgresql is among the chosen backends but no server is "
                f"given: set --postkit-postgres-url, {POSTGRES_URL_ENV} or postkit_postgres_url"
            )
    else:
        backends = ("sqlite", "postgresql") if postgres_url else ("sqlite",)
    keep = frozenset(str(name) for name in config.getini("postkit_keep_tables"))
    config.stash[_OPTIONS] = _Options(postgres_url, backends, keep)


def _parse_backends(text: str, where: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name for name in re.split(r"[\s,]+", text.strip()) if name))
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise pytest.UsageError(
            f"postkit.testing: {where}: unknown database {', '.join(unknown) or '(none)'}; "
            f"choose among {', '.join(BACKENDS)}"
        )
    return names


def _options(config: pytest.Config) -> _Options:
    return config.stash[_OPTIONS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that needs a database once per chosen backend."""
    if "postkit_backend" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        names = names.split(",") if isinstance(names, str) else names
        if "postkit_backend" in [str(name).strip() for name in names]:
            return  # the test chose its own backends
    options = _options(metafunc.config)
    params: list[Any] = list(options.backends)
    chosen = metafunc.definition.get_closest_marker("postkit_backends")
    if chosen is not None:
        wanted = _parse_backends(" ".join(chosen.args), f"{metafunc.definition.nodeid} marker")
        params = [
            name if name in options.backends else pytest.param(name, marks=_not_chosen(name))
            for name in wanted
        ]
    metafunc.parametrize("postkit_backend", params, indirect=True, scope="session")


def _not_chosen(name: str) -> pytest.MarkDecorator:
    if name == "postgresql":
        reason = (
            "no PostgreSQL server: set --postkit-postgres-url, "
            f"{POSTGRES_URL_ENV} or postkit_postgres_url"
        )
    else:
        reason = f"{name} is not among the chosen backends (--postkit-backends)"
    return pytest.mark.skip(reason=f"postkit.testing: {reason}")


# --- Databases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigratedDatabase:
    """The session's migrated database: a SQLite file tests copy, or a PostgreSQL database.

    :param backend: ``"sqlite"`` or ``"postgresql"``.
    :param url: its URL.
    :param emptied_tables: the tables truncated after each test (PostgreSQL).
    """

    backend: str
    url: str
    emptied_tables: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def postkit_backend(request: pytest.FixtureRequest) -> str:
    """The database kind of this test: ``"sqlite"`` or ``"postgresql"``."""
    name: str = getattr(request, "param", _options(request.config).backends[0])
    return name


@pytest.fixture(scope="session")
def postkit_alembic_config(pytestconfig: pytest.Config) -> Config | None:
    """The host's Alembic configuration, or ``None`` for postkit's own history.

    Read from the ``postkit_alembic_ini`` ini option (relative to the ini file). Override the
    fixture to build the :class:`~alembic.config.Config` in code.
    """
    name = str(pytestconfig.getini("postkit_alembic_ini"))
    if not name:
        return None
    base = pytestconfig.inipath.parent if pytestconfig.inipath else pytestconfig.rootpath
    path = (base / name).resolve()
    if not path.is_file():
        pytest.fail(f"postkit.testing: postkit_alembic_ini: {path} does not exist", pytrace=False)
    return Config(str(path))


@pytest.fixture(scope="session")
def postkit_database(
    postkit_backend: str,
    postkit_alembic_config: Config | None,
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MigratedDatabase]:
    """A database migrated once for the session (the template every test starts from)."""
    options = _options(pytestconfig)
    if postkit_backend == "sqlite":
        path = tmp_path_factory.mktemp("postkit-template") / "template.db"
        url = f"sqlite+aiosqlite:///{path}"
        _migrate(url, postkit_alembic_config)
        yield MigratedDatabase("sqlite", url)
        return
    if options.postgres_url is None:
        pytest.skip(f"postkit.testing: no PostgreSQL server ({POSTGRES_URL_ENV} is not set)")
    url = asyncio.run(_create_postgres_database(options.postgres_url))
    try:
        _migrate(url, postkit_alembic_config)
        tables = asyncio.run(_postgres_tables(url))
        emptied = tuple(
            name
            for name in tables
            if not name.endswith("alembic_version") and name not in options.keep_tables
        )
        yield MigratedDatabase("postgresql", url, emptied)
    finally:
        asyncio.run(_drop_postgres_database(options.postgres_url, url))


@pytest.fixture
def postkit_database_url(postkit_database: MigratedDatabase, tmp_path: Path) -> Iterator[str]:
    """The URL of a migrated, empty database for this test."""
    if postkit_database.backend == "sqlite":
        template = Path(make_url(postkit_database.url).database or "")
        copy = tmp_path / "postkit-test.db"
        shutil.copyfile(template, copy)
        yield f"sqlite+aiosqlite:///{copy}"
        return
    yield postkit_database.url
    asyncio.run(_truncate(postkit_database.url, postkit_database.emptied_tables))


def _migrate(url: str, config: Config | None) -> None:
    if config is None:
        from postkit.migrations import upgrade

        upgrade(url)
    else:
        from postkit.migrations import upgrade_composed

        upgrade_composed(config, "heads", url=url)


def _database_on(server_url: str, database: str) -> str:
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


async def _run_sql(url: str, statement: str) -> list[str]:
    """Run one statement outside a transaction (``CREATE DATABASE`` needs that); return the
    first column of its rows."""
    from sqlalchemy import text

    from postkit.db import create_engine_for
    from postkit.urls import normalize_database_url

    engine = create_engine_for(normalize_database_url(url))
    try:
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            result = await autocommit.execute(text(statement))
            return [str(row[0]) for row in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _create_postgres_database(server_url: str) -> str:
    name = f"postkit_testing_{uuid.uuid4().hex[:12]}"
    await _run_sql(server_url, f'CREATE DATABASE "{name}"')
    return _database_on(server_url, name)


async def _drop_postgres_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    await _run_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _postgres_tables(url: str) -> list[str]:
    return await _run_sql(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
    )


async def _truncate(url: str, tables: Sequence[str]) -> None:
    if tables:
        names = ", ".join('"{}"'.format(name.replace('"', '""')) for name in tables)
        await _run_sql(url, f"TRUNCATE {names} RESTART IDENTITY CASCADE")


# --- Settings, app, kit, client ---------------------------------------------------------------


def settings_for_tests(database_url: str, **overrides: Any) -> PostKitSettings:
    """Settings for a test: the given database, bcrypt at its minimum cost (4 rounds), a fixed
    secret key, no plugin discovery and no ``auto_migrate`` (the plugin migrated already).
    Keyword arguments override any of them."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET_KEY,
        "bcrypt_rounds": 4,
        "discover_plugins": False,
        "auto_migrate": False,
    }
    values.update(overrides)
    return PostKitSettings(_env_file=None, **values)


def default_app(settings: PostKitSettings) -> FastAPI:
    """The app ``postkit_app_factory`` builds unless the host overrides it: postkit alone,
    mounted at the root (enough to test a plugin)."""
    kit = PostKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    app.state.kit = kit
    app.include_router(kit.router)
    return app


def find_kit(app: FastAPI) -> PostKit:
    """The :class:`~postkit.PostKit` an app keeps in ``app.state`` (any attribute name).

    :raises LookupError: there is none, or more than one.
    """
    state: dict[str, Any] = getattr(app.state, "_state", {})
    kits = [value for value in state.values() if isinstance(value, PostKit)]
    if len(kits) == 1:
        return kits[0]
    problem = "no PostKit" if not kits else f"{len(kits)} PostKit objects"
    raise LookupError(
        f"postkit.testing: the app has {problem} in app.state: store the app's kit there "
        "(`app.state.kit = kit` in your app factory) or override the postkit_kit fixture"
    )


@pytest.fixture
def postkit_settings(postkit_database_url: str) -> PostKitSettings:
    """postkit's settings for this test (see :func:`settings_for_tests`). Override it to change
    them, e.g. ``return settings_for_tests(postkit_database_url, public_reads=True)``."""
    return settings_for_tests(postkit_database_url)


@pytest.fixture
def postkit_app_factory() -> AppFactory:
    """Builds the app under test from ``postkit_settings``. Override it to return your factory
    (``return create_app``); the app must keep its kit in ``app.state`` (``app.state.kit``)."""
    return default_app


@pytest.fixture
def postkit_app(postkit_app_factory: AppFactory, postkit_settings: PostKitSettings) -> FastAPI:
    """The app under test, not started (``postkit_client`` starts it)."""
    return postkit_app_factory(postkit_settings)


@pytest.fixture
def postkit_kit(postkit_app: FastAPI) -> PostKit:
    """The app's kit: its services (``kit.accounts``, ``kit.posts``...) and its database."""
    try:
        kit = find_kit(postkit_app)
    except LookupError as exc:
        problem = str(exc)
    else:
        return kit
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def postkit_outbox(postkit_kit: PostKit) -> MemoryOutbox:
    """The kit's mail goes here instead of out: a :class:`~postkit.mail.MemoryOutbox` with the
    messages sent during the test (``outbox.to(address)``, ``await outbox.wait_for(count)``).
    Mail leaves after the commit, on the kit's background sender, so wait for it."""
    outbox = MemoryOutbox()
    postkit_kit.mailer = outbox
    return outbox


@pytest_asyncio.fixture
async def postkit_client(postkit_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` bound to the app (``http://testserver``), its lifespan running
    for the duration of the test."""
    async with postkit_app.router.lifespan_context(postkit_app):
        transport = httpx.ASGITransport(app=postkit_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


# --- Users ------------------------------------------------------------------------------------


class MadeUser(NamedTuple):
    """An account ``postkit_make_user`` created: ``user, password = await postkit_make_user()``."""

    user: User
    password: str


UserLike = User | MadeUser


def _user_of(user: UserLike) -> User:
    return user.user if isinstance(user, MadeUser) else user


@pytest_asyncio.fixture
async def postkit_make_user(
    postkit_kit: PostKit, postkit_client: httpx.AsyncClient
) -> Callable[..., Awaitable[MadeUser]]:
    """``await postkit_make_user(email=..., username=..., password=...)``: an account created
    through ``kit.accounts.register`` (its rules and hooks apply); every argument is optional."""

    async def make(
        *, email: str | None = None, username: str | None = None, password: str = DEFAULT_PASSWORD
    ) -> MadeUser:
        suffix = uuid.uuid4().hex[:10]
        async with postkit_kit.db.sessionmaker() as session:
            user = await postkit_kit.accounts.register(
                session,
                email=email or f"user_{suffix}@example.com",
                password=password,
                username=username,
            )
        return MadeUser(user, password)

    return make


@pytest_asyncio.fixture
async def postkit_act_as(
    postkit_kit: PostKit, postkit_client: httpx.AsyncClient
) -> Callable[[UserLike], Awaitable[dict[str, str]]]:
    """``headers = await postkit_act_as(user)``: the ``Authorization`` header of a real auth
    session opened with ``kit.sessions.start`` (no password, no HTTP login). The token passes
    every check a login's token does, and logout or a password change revokes it as usual."""

    async def act_as(user: UserLike) -> dict[str, str]:
        async with postkit_kit.db.sessionmaker() as session:
            current = await session.get(User, _user_of(user).id)
            if current is None:
                raise LookupError(f"postkit.testing: user {_user_of(user).id} does not exist")
            tokens = await postkit_kit.sessions.start(session, user=current)
        return {"Authorization": f"Bearer {tokens.access_token}"}

    return act_as


@pytest_asyncio.fixture
async def postkit_login(
    postkit_app: FastAPI, postkit_client: httpx.AsyncClient
) -> Callable[..., Awaitable[dict[str, str]]]:
    """``headers = await postkit_login(made_user)``: log in through postkit's login route
    (wherever the app mounted it) with the account's email and password; returns the
    ``Authorization`` header. Pass ``password=`` for a :class:`~postkit.User`."""

    async def login(user: UserLike, *, password: str | None = None) -> dict[str, str]:
        path = postkit_app.url_path_for(LOGIN_ROUTE_NAME)
        secret = password or (user.password if isinstance(user, MadeUser) else None)
        if secret is None:
            raise TypeError("postkit.testing: postkit_login(user) needs password= for a User")
        data = {"username": _user_of(user).email, "password": secret}
        response = await postkit_client.post(path, data=data)
        if response.status_code != 200:
            raise AssertionError(
                f"postkit.testing: login failed: {response.status_code} {response.text}"
            )
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return login


@pytest_asyncio.fixture
async def postkit_auth_client(
    postkit_app: FastAPI,
    postkit_act_as: Callable[[UserLike], Awaitable[dict[str, str]]],
    postkit_login: Callable[..., Awaitable[dict[str, str]]],
) -> AsyncIterator[Callable[..., Awaitable[httpx.AsyncClient]]]:
    """``client = await postkit_auth_client(user)``: another client on the same running app,
    sending ``user``'s token with every request (``via_login=True`` logs in through HTTP
    instead of opening the session directly)."""
    async with AsyncExitStack() as stack:

        async def make(user: UserLike, *, via_login: bool = False) -> httpx.AsyncClient:
            headers = await (postkit_login(user) if via_login else postkit_act_as(user))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=postkit_app),
                base_url="http://testserver",
                headers=headers,
            )
            return await stack.enter_async_context(client)

        yield make
