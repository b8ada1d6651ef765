"""The fast path: SQLAlchemy Core statements run on the pooled driver connection.

postkit's hottest requests (a page of the feed, one post, the token check before them) are
single statements. Through an ORM session each costs a ``BEGIN``, the statement and a
``COMMIT``, plus SQLAlchemy's per-execution bookkeeping; here each costs one round trip:

- the statement is still built with SQLAlchemy Core (plugins' filters composed in) and
  compiled by SQLAlchemy for the engine's dialect, **once per query shape**: shapes are keyed by
  SQLAlchemy's own cache key, so a plugin filter with a different value reuses the compiled
  SQL and only the value changes;
- it runs on the connection SQLAlchemy's pool hands out (so pool size, pre-ping of idle
  connections, timeouts and PgBouncer settings all apply), straight on the driver (asyncpg or
  aiosqlite), with no explicit transaction: one statement is atomic on its own;
- parameters and results pass through the column types' bind and result processors, so values
  come back exactly as the ORM would give them (aware UTC datetimes on SQLite too).

An engine someone watches takes SQLAlchemy's own execution path instead, still without the
ORM: with ``echo`` (or the ``sqlalchemy.engine`` logger at INFO) or a ``before_cursor_execute``
/ ``after_cursor_execute`` listener (query logging, tracing such as OpenTelemetry's), every
statement is seen as usual, at the cost of the speed.

A lost link, a full pool or a query over ``database_command_timeout`` ends the connection
(the pool opens a new one) and surfaces as an outage (503), like on the ORM path.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from sqlalchemy.exc import DisconnectionError, IntegrityError, InvalidRequestError
from sqlalchemy.util import greenlet_spawn

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import Dialect, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.pool import PoolProxiedConnection
    from sqlalchemy.sql import Delete, Insert, Select, Update
    from sqlalchemy.sql.compiler import SQLCompiler

__all__ = [
    "CompiledStatement",
    "DriverReads",
    "DriverTransaction",
    "SessionTransaction",
    "StatementCache",
    "Transaction",
    "is_watched",
]

Processor = Callable[[Any], Any]
Row = Sequence[Any]
Statement: TypeAlias = "Select[Any] | Insert | Update | Delete"
"""What the fast path runs: a SELECT, or an INSERT/UPDATE/DELETE (with RETURNING for rows)."""

# Driver errors that mean the connection is gone (matched by class name, along each class's
# bases: asyncpg is not imported for SQLite-only hosts).
_LOST_LINK_ERRORS = frozenset(
    {
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "PostgresConnectionError",
        "CannotConnectNowError",
        "AdminShutdownError",
        "CrashShutdownError",
        "TooManyConnectionsError",
    }
)


def _is_lost_link(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, asyncio.TimeoutError)):
        return True
    return any(cls.__name__ in _LOST_LINK_ERRORS for cls in type(exc).__mro__)


def is_watched(engine: Engine) -> bool:
    """Whether statements on ``engine`` are logged or listened to (then the fast path steps
    aside so that they are seen)."""
    dispatch = engine.dispatch
    if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
        return True
    return engine.logger.isEnabledFor(logging.INFO)


def _refuse_python_defaults(compiled: SQLCompiler) -> None:
    # Python-side column defaults (``default=utcnow``, ``onupdate=...``) are computed by
    # SQLAlchemy's execution, which the fast path skips: its writes name every such value.
    prefetch = [*compiled.insert_prefetch, *compiled.update_prefetch]
    if prefetch:
        names = ", ".join(sorted(column.key for column in prefetch))
        raise TypeError(f"a fast-path write must give these columns a value: {names}")


def _row_type(statement: Statement) -> Any:
    names = [
        column.key or f"column_{index}" for index, column in enumerate(statement.exported_columns)
    ]
    return collections.namedtuple("Row", names, rename=True)


def _result_processor(column: Any, dialect: Dialect) -> Processor | None:
    impl = column.type.dialect_impl(dialect)
    try:
        processor: Processor | None = impl.result_processor(dialect, None)
    except (TypeError, InvalidRequestError):
        # asyncpg's numeric types choose by the driver's type code, which a statement compiled
        # ahead of its first execution does not know; asyncpg already answers float8 as a
        # float and numeric as a Decimal, which is what these processors would give.
        return None
    return processor


def _result_processors(statement: Statement, dialect: Dialect) -> tuple[tuple[int, Processor], ...]:
    processors = [_result_processor(column, dialect) for column in statement.exported_columns]
    return tuple((index, processor) for index, processor in enumerate(processors) if processor)


class CompiledStatement:
    """One query shape compiled for one dialect: its SQL, the order of its parameters, and the
    type processors of its parameters and result columns."""

    __slots__ = ("_compiled", "_result_processors", "_row_type", "bind_processors", "names", "sql")

    def __init__(self, compiled: SQLCompiler, statement: Statement, dialect: Dialect) -> None:
        names = compiled.positiontup
        if names is None:  # pragma: no cover - every driver postkit supports is positional
            raise TypeError(f"{dialect.name}: postkit's fast path needs a positional paramstyle")
        _refuse_python_defaults(compiled)
        self._compiled = compiled
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(names)
        binds = compiled.binds
        self.bind_processors: tuple[Processor | None, ...] = tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        )
        self._result_processors = _result_processors(statement, dialect)
        self._row_type = _row_type(statement)

    def arguments(self, params: dict[str, Any], extracted: Sequence[Any] | None) -> list[Any]:
        """The positional arguments for ``params`` (and the values a plugin's filter carries)."""
        values = self._compiled.construct_params(params, extracted_parameters=extracted)
        arguments = [values[name] for name in self.names]
        for index, processor in enumerate(self.bind_processors):
            if processor is not None:
                arguments[index] = processor(arguments[index])
        return arguments

    def rows(self, raw: Sequence[Row]) -> list[Row]:
        """The driver's rows with the result processors applied (the rows as they are when no
        column needs one)."""
        return _processed(raw, self._result_processors)

    def named_rows(self, raw: Sequence[Row]) -> list[Any]:
        """:meth:`rows` as named tuples (``row.vote_count``)."""
        return [self._row_type._make(row) for row in self.rows(raw)]


class _OneOff:
    """A statement compiled for one execution, with its values (an IN list's length is part of
    its SQL, so its shape is not cached)."""

    __slots__ = ("_result_processors", "_row_type", "arguments", "sql")

    def __init__(self, statement: Statement, params: dict[str, Any], dialect: Dialect) -> None:
        bound = statement.params(params)
        compiled = bound.compile(dialect=dialect)
        _refuse_python_defaults(compiled)
        state = compiled.construct_expanded_state()
        self.sql: str = state.statement
        names = state.positiontup or ()
        arguments = [state.parameters[name] for name in names]
        for index, name in enumerate(names):
            processor = state.processors.get(name)
            if processor is not None:
                arguments[index] = processor(arguments[index])
        self.arguments = arguments
        self._result_processors = _result_processors(statement, dialect)
        self._row_type = _row_type(statement)

    def rows(self, raw: Sequence[Row]) -> list[Row]:
        return _processed(raw, self._result_processors)

    def named_rows(self, raw: Sequence[Row]) -> list[Any]:
        return [self._row_type._make(row) for row in self.rows(raw)]


def _processed(raw: Sequence[Row], processors: tuple[tuple[int, Processor], ...]) -> list[Row]:
    if not processors:
        return list(raw)
    rows: list[Row] = []
    for record in raw:
        row = list(record)
        for index, processor in processors:
            row[index] = processor(row[index])
        rows.append(row)
    return rows


class StatementCache:
    """Compiled statements of one engine, by SQLAlchemy cache key (bounded: the oldest shapes
    are forgotten first).

    A statement object met again (one built once, with bound parameters, as the services keep
    theirs) is found by identity, without computing its cache key: statements are immutable,
    and each remembered one is held, so its identity cannot pass to another object meanwhile.
    """

    def __init__(self, dialect: Dialect, *, size: int = 500, known: int = 64) -> None:
        self.dialect = dialect
        self.size = size
        self.known = known
        self._compiled: dict[Any, CompiledStatement | None] = {}
        # id(statement) -> (the statement, its compiled shape, the values its key extracted)
        self._known: dict[int, tuple[Statement, CompiledStatement | None, Any]] = {}

    def prepare(
        self, statement: Statement, params: dict[str, Any]
    ) -> tuple[CompiledStatement | _OneOff, list[Any]]:
        """The compiled shape of ``statement`` and its positional arguments for ``params``."""
        known = self._known.get(id(statement))
        if known is not None and known[0] is statement:
            compiled, extracted = known[1], known[2]
            if compiled is not None:
                return compiled, compiled.arguments(params, extracted)
        else:
            key = statement._generate_cache_key()
            if key is not None:
                shape = key.key
                compiled = (
                    self._compiled[shape]
                    if shape in self._compiled
                    else self._compile(statement, key)
                )
                self._remember(statement, compiled, key.bindparams)
                if compiled is not None:
                    return compiled, compiled.arguments(params, key.bindparams)
        # Not cacheable (an element without a cache key, or an IN list whose length is part of
        # the SQL): compiled for this execution alone, with its values.
        once = _OneOff(statement, params, self.dialect)
        return once, once.arguments

    def _remember(
        self, statement: Statement, compiled: CompiledStatement | None, extracted: Any
    ) -> None:
        if len(self._known) >= self.known:
            del self._known[next(iter(self._known))]
        self._known[id(statement)] = (statement, compiled, extracted)

    def _compile(self, statement: Statement, key: Any) -> CompiledStatement | None:
        dialect = self.dialect
        compiler = dialect.statement_compiler(dialect, statement, cache_key=key)
        if any(bind.expanding or bind.literal_execute for bind in compiler.binds.values()):
            compiled = None  # remembered as a shape to compile for each execution
        else:
            compiled = CompiledStatement(compiler, statement, dialect)
        if len(self._compiled) >= self.size:
            del self._compiled[next(iter(self._compiled))]
        self._compiled[key.key] = compiled
        return compiled


class DriverReads:
    """Single statements on pooled driver connections (``kit.db.reads``): each :meth:`fetch`
    checks a connection out of the pool, runs its statement in the driver's autocommit mode
    (the statement is its own transaction) and returns the connection at once.
    """

    __slots__ = ("_cache", "_engine", "_sqlite")

    def __init__(self, engine: AsyncEngine, cache: StatementCache) -> None:
        self._engine = engine
        self._cache = cache
        self._sqlite = engine.dialect.name == "sqlite"

    async def fetch(self, statement: Select[Any], params: dict[str, Any]) -> list[Row]:
        """Every row ``statement`` selects with ``params``."""
        if is_watched(self._engine.sync_engine):
            return await self._fetch_watched(statement, params)
        compiled, arguments = self._cache.prepare(statement, params)
        # The pool's own checkout: its size, timeout and idle-connection ping apply.
        fairy: PoolProxiedConnection | None = await self._engine.raw_connection()
        assert fairy is not None
        try:
            driver: Any = fairy.driver_connection
            if self._sqlite:
                raw = await driver.execute_fetchall(compiled.sql, arguments)
            else:
                raw = await driver.fetch(compiled.sql, *arguments)
        except BaseException as exc:
            if isinstance(exc, Exception) and not _is_lost_link(exc):
                raise
            # Gone, timed out or interrupted mid-statement: never hand this one out again.
            gone, fairy = fairy, None
            await asyncio.shield(greenlet_spawn(gone.invalidate, exc))
            if isinstance(exc, Exception):
                raise DisconnectionError(f"database link lost: {type(exc).__name__}") from exc
            raise
        finally:
            if fairy is not None:
                await greenlet_spawn(fairy.close)
        return compiled.rows(raw)

    async def first(self, statement: Select[Any], params: dict[str, Any]) -> Row | None:
        """The first row ``statement`` selects, or ``None``."""
        rows = await self.fetch(statement, params)
        return rows[0] if rows else None

    async def _fetch_watched(self, statement: Select[Any], params: dict[str, Any]) -> list[Row]:
        async with self._engine.connect() as connection:
            result = await connection.execute(statement, params)
            rows: list[Row] = list(result.all())
        return rows

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One transaction on one pooled driver connection: its statements run in order and
        :meth:`DriverTransaction.commit` ends it; leaving the block without committing rolls
        it back. A lost link discards the connection and surfaces as an outage."""
        if is_watched(self._engine.sync_engine):
            async with self._engine.connect() as connection, connection.begin() as begun:
                yield _WatchedTransaction(connection, begun)
            return
        fairy: PoolProxiedConnection | None = await self._engine.raw_connection()
        assert fairy is not None
        driver: Any = fairy.driver_connection
        transaction = DriverTransaction(driver, self._cache, sqlite=self._sqlite)
        try:
            await transaction._begin()
            yield transaction
            await transaction._end()
        except BaseException as exc:
            lost = not isinstance(exc, Exception) or _is_lost_link(exc)
            if not lost:
                try:
                    await transaction._end()
                except Exception as end_failure:
                    lost, exc = _is_lost_link(end_failure), end_failure
            if not lost:
                raise
            gone, fairy = fairy, None
            await asyncio.shield(greenlet_spawn(gone.invalidate, exc))
            if isinstance(exc, Exception):
                raise DisconnectionError(f"database link lost: {type(exc).__name__}") from exc
            raise
        finally:
            if fairy is not None:
                await greenlet_spawn(fairy.close)


class Transaction(Protocol):
    """What :meth:`DriverReads.transaction` gives: statements in order, then a commit."""

    @property
    def dialect_name(self) -> str: ...

    async def execute(
        self, statement: Statement, params: dict[str, Any] | None = None
    ) -> list[Any]: ...

    async def commit(self) -> None: ...


class DriverTransaction:
    """Statements of one transaction on a driver connection (see
    :meth:`DriverReads.transaction`). Rows come back as named tuples of the statement's
    columns (``row.vote_count``)."""

    __slots__ = ("_cache", "_driver", "_open", "_sqlite", "_transaction", "dialect_name")

    def __init__(self, driver: Any, cache: StatementCache, *, sqlite: bool) -> None:
        self._driver = driver
        self._cache = cache
        self._sqlite = sqlite
        self.dialect_name = "sqlite" if sqlite else "postgresql"
        self._transaction: Any = None
        self._open = False

    async def _begin(self) -> None:
        if self._sqlite:
            # pysqlite begins before the first write; reads before it see the latest commit.
            self._open = True
            return
        self._transaction = self._driver.transaction()
        await self._transaction.start()
        self._open = True

    async def _end(self) -> None:
        """Roll back whatever was not committed."""
        if not self._open:
            return
        self._open = False
        if self._sqlite:
            await self._driver.rollback()
        else:
            await self._transaction.rollback()

    async def execute(
        self, statement: Statement, params: dict[str, Any] | None = None
    ) -> list[Any]:
        """The rows ``statement`` answers (its RETURNING columns for a write)."""
        compiled, arguments = self._cache.prepare(statement, params or {})
        try:
            if self._sqlite:
                raw = await self._driver.execute_fetchall(compiled.sql, arguments)
            else:
                raw = await self._driver.fetch(compiled.sql, *arguments)
        except Exception as exc:
            if _is_integrity_error(exc):
                # As SQLAlchemy raises it, so that services handle both paths alike.
                raise IntegrityError(compiled.sql, None, exc) from exc
            raise
        return compiled.named_rows(raw)

    async def commit(self) -> None:
        """Commit the transaction (the block then has nothing left to roll back)."""
        if not self._open:
            raise RuntimeError("the transaction is already over")
        self._open = False
        if self._sqlite:
            await self._driver.commit()
        else:
            await self._transaction.commit()


class _WatchedTransaction:
    """:class:`DriverTransaction` on SQLAlchemy's own execution (a watched engine)."""

    def __init__(self, connection: Any, begun: Any) -> None:
        self._connection = connection
        self._begun = begun
        self.dialect_name: str = connection.dialect.name

    async def execute(
        self, statement: Statement, params: dict[str, Any] | None = None
    ) -> list[Any]:
        result = await self._connection.execute(statement, params or {})
        return list(result.all()) if result.returns_rows else []

    async def commit(self) -> None:
        await self._begun.commit()


class SessionTransaction:
    """A :class:`Transaction` over an ORM session (a host's code calling a service with its
    ``AsyncSession``): the same statements through SQLAlchemy's execution."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.dialect_name: str = session.get_bind().dialect.name

    async def execute(
        self, statement: Statement, params: dict[str, Any] | None = None
    ) -> list[Any]:
        result: Any = await self.session.execute(statement, params or {})
        return list(result.all()) if result.returns_rows else []

    async def commit(self) -> None:
        await self.session.commit()


def _is_integrity_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"IntegrityError", "IntegrityConstraintViolationError"})
