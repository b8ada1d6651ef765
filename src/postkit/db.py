"""Database URLs, the async engine and the per-request session.

Nothing here runs at import time: a :class:`Database` is built by each :class:`~postkit.PostKit`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool
from starlette.requests import Request

if TYPE_CHECKING:
    from postkit.settings import PostKitSettings

__all__ = ["REQUEST_FAILED", "Database", "normalize_database_url"]

REQUEST_FAILED = "postkit.request_failed"
"""ASGI scope key a postkit route sets when it answers an error: a session still open then rolls
back instead of committing (FastAPI may close function-scoped dependencies after the route has
answered)."""

_POSTGRES_NAMES = {"postgres", "postgresql", "postgresql+asyncpg"}
_SQLITE_NAMES = {"sqlite", "sqlite+aiosqlite"}
_LIBPQ_TO_ASYNCPG = {"sslmode": "ssl", "connect_timeout": "timeout"}
# Keyword arguments of asyncpg.connect() that make sense in a URL, plus SQLAlchemy's own.
_ASYNCPG_QUERY_NAMES = frozenset(
    {
        "host",
        "port",
        "passfile",
        "service",
        "servicefile",
        "timeout",
        "command_timeout",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "ssl",
        "direct_tls",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "prepared_statement_cache_size",
    }
)


def normalize_database_url(url: str) -> str:
    """Return ``url`` rewritten for postkit's async drivers, or raise ``ValueError``.

    ``postgres://`` (Heroku and most hosts) and ``postgresql://`` become ``postgresql+asyncpg://``,
    with libpq's ``sslmode`` and ``connect_timeout`` turned into asyncpg's ``ssl`` and ``timeout``
    and parameters asyncpg does not know refused; ``sqlite://`` becomes
    ``sqlite+aiosqlite://``. Any other scheme is refused with a message that says what is accepted.
    """
    url = url.strip()
    if not url:
        raise ValueError("must not be empty")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(
            "is not a database URL (expected e.g. postgresql://user:pass@host/db "
            "or sqlite:///./postkit.db)"
        ) from exc
    name = parsed.drivername.lower()
    if name in _POSTGRES_NAMES:
        parsed = parsed.set(drivername="postgresql+asyncpg", query=_asyncpg_query(parsed))
    elif name in _SQLITE_NAMES:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif name.startswith(("postgresql+", "sqlite+")):
        driver = name.split("+", 1)[1]
        raise ValueError(
            f"uses the {driver!r} driver; postkit is async and needs asyncpg (PostgreSQL) or "
            "aiosqlite (SQLite): drop the driver from the scheme and postkit picks the right one"
        )
    else:
        raise ValueError(
            f"has the unsupported scheme {parsed.drivername!r}; use postgresql://, postgres:// "
            "or sqlite:///"
        )
    return parsed.render_as_string(hide_password=False)


def _asyncpg_query(parsed: URL) -> dict[str, str | tuple[str, ...]]:
    """The URL's query for asyncpg: libpq's names translated, anything asyncpg lacks refused.

    asyncpg receives every query parameter as a keyword argument, so an unknown one (libpq's
    ``application_name``, ``channel_binding``...) would fail at the first connection instead.
    """
    query = dict(parsed.query)
    for libpq_name, asyncpg_name in _LIBPQ_TO_ASYNCPG.items():
        if libpq_name in query:
            query[asyncpg_name] = query.pop(libpq_name)
    unknown = sorted(set(query) - _ASYNCPG_QUERY_NAMES)
    if unknown:
        raise ValueError(
            f"has the query parameter(s) {', '.join(unknown)}, which the asyncpg driver does not "
            f"accept; accepted: {', '.join(sorted(_ASYNCPG_QUERY_NAMES | set(_LIBPQ_TO_ASYNCPG)))}"
        )
    for name in ("timeout", "command_timeout"):
        if name in query and not _is_positive_number(query[name]):
            raise ValueError(f"has {name}={query[name]!r}; it must be a positive number of seconds")
    return query


def _is_positive_number(value: object) -> bool:
    try:
        return float(str(value)) > 0
    except ValueError:
        return False


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def create_engine_for(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    command_timeout: float = 30.0,
    statement_cache_size: int = 100,
) -> AsyncEngine:
    """Build an :class:`AsyncEngine` with the options postkit relies on for ``url``."""
    parsed = make_url(url)
    # Parameters carry password hashes and token digests: keep them out of logs and errors.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
        if _is_memory_sqlite(parsed):
            kwargs["poolclass"] = StaticPool
        engine = create_async_engine(parsed, **kwargs)
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        return engine
    connect_args: dict[str, Any] = {
        "timeout": connect_timeout,
        "command_timeout": command_timeout,
        "statement_cache_size": statement_cache_size,
        "server_settings": {"application_name": "postkit"},
    }
    # A timeout written in the URL (``?connect_timeout=10`` arrives as ``timeout``) wins over the
    # settings' default; asyncpg wants it as a number, and SQLAlchemy passes URL values as text.
    for key in ("timeout", "command_timeout"):
        if key in parsed.query:
            connect_args[key] = float(str(parsed.query[key]))
            parsed = parsed.difference_update_query([key])
    kwargs.update(
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        connect_args=connect_args,
    )
    if statement_cache_size == 0:
        # Behind PgBouncer (transaction mode) SQLAlchemy's own statement cache must go too.
        kwargs["connect_args"]["prepared_statement_cache_size"] = 0
    engine = create_async_engine(parsed, **kwargs)
    # Instead of pool_pre_ping, which costs three round trips (BEGIN; ping; ROLLBACK with
    # asyncpg) on every checkout, ping only connections that sat idle in the pool: a database
    # restarted during a quiet spell is noticed before a request uses a dead connection, while
    # under load connections are reused hot. A connection that dies mid-request is invalidated
    # (with every connection older than it) and that request answers 503.
    event.listen(engine.sync_engine, "checkin", _stamp_checkin)
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


IDLE_PING_SECONDS = 5.0
"""A pooled connection idle for longer than this is pinged before it is handed out."""


def _stamp_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["postkit_checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    checked_in = record.info.get("postkit_checked_in")
    if checked_in is None or time.monotonic() - checked_in <= IDLE_PING_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as exc:
        # The pool discards this connection and checks out (or opens) another one.
        raise DisconnectionError("pooled connection is gone") from exc


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """The engine and session factory of one :class:`~postkit.PostKit`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @classmethod
    def from_settings(cls, settings: PostKitSettings) -> Database:
        return cls(
            create_engine_for(
                settings.database_url,
                echo=settings.database_echo,
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_max_overflow,
                pool_timeout=settings.database_pool_timeout,
                connect_timeout=settings.database_connect_timeout,
                command_timeout=settings.database_command_timeout,
                statement_cache_size=settings.database_statement_cache_size,
            )
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def session(self, request: Request) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency: one session per request, committed on success, rolled back on error.

        "Error" covers both an exception and an error answer a postkit route turned an exception
        into (see :data:`REQUEST_FAILED`). Services commit themselves where a
        write must be durable before "after" hooks run; the commit here makes any remaining work
        durable before the response is sent.
        """
        async with self.sessionmaker() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            if request.scope.get(REQUEST_FAILED):
                await session.rollback()
            elif session.in_transaction():
                await session.commit()

    async def dispose(self) -> None:
        await self.engine.dispose()
