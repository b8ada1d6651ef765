"""The async engine, its pool's health checks, and the per-request session.

Nothing here runs at import time: a :class:`Database` is built by each :class:`~postkit.PostKit`.
URLs are normalised by :mod:`postkit.urls` before they reach this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from postkit.driver import DriverReads, StatementCache
from postkit.urls import normalize_database_url

if TYPE_CHECKING:
    from postkit.settings import PostKitSettings

# normalize_database_url lives in postkit.urls; it stays importable from here for env.py files
# written against the first release.
__all__ = ["Database", "create_engine_for", "is_outage", "normalize_database_url"]

logger = logging.getLogger("postkit")

# asyncpg's errors for a connection that is gone or cannot be made (matched by name: asyncpg is
# not imported for SQLite-only hosts).
_LOST_CONNECTION_ERRORS = frozenset(
    {
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "CannotConnectNowError",
        "ConnectionFailureError",
        "TooManyConnectionsError",
    }
)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable or stopped answering (a 503, worth a
    retry), rather than a bug.

    Covers a full pool, a connection lost or refused, and a query over
    ``database_command_timeout`` (``asyncio.TimeoutError``: the builtin ``TimeoutError`` on
    Python 3.11+, a class of its own on 3.10).
    """
    if isinstance(exc, (PoolTimeoutError, DisconnectionError, ConnectionError)):
        return True
    if isinstance(exc, asyncio.TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return (
            exc.connection_invalidated
            or isinstance(exc.orig, (OSError, ConnectionError, asyncio.TimeoutError))
            or type(exc.orig).__name__ in _LOST_CONNECTION_ERRORS
        )
    return isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)


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
        self.statements = StatementCache(engine.dialect)
        self.reads = DriverReads(self.engine, self.statements)
        """Fast-path reads: single statements on pooled driver connections."""

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

    async def session(self) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency: the request's session, closed when the route is done.

        It commits nothing: the service that writes commits its own writes (see
        ``docs/transactions``), and closing rolls back whatever is left uncommitted, such as
        the staged writes of a request that failed. A connection found dead while closing is
        discarded: there was nothing on it worth keeping.
        """
        session = self.sessionmaker()
        try:
            yield session
        finally:
            try:
                await session.close()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                logger.warning("postkit: database link lost while closing a session: %s", exc)
                with contextlib.suppress(Exception):
                    await session.invalidate()

    async def dispose(self) -> None:
        await self.engine.dispose()
