"""postkit's history composed into a host's own Alembic history, from any starting state.

A host database can be in one of four states when the host's composed history first meets it:

(a) empty; (b) migrated by postkit alone (``auto_migrate``, ``postkit db upgrade``), so that
``postkit_alembic_version`` records postkit's revision, whether or not the host's own history
has revisions applied there; (c) at the host's own revisions, without postkit's tables; (d)
already composed.

Alembic handles (a), (c) and (d) by itself. (b) needs one step first,
:func:`adopt_standalone_history`: postkit's record moves from ``postkit_alembic_version`` into
the host's version table, as a branch head of its own, and the standalone table is dropped;
from then on exactly one history governs the database. :func:`run_env`, the body of a host's
``env.py``, takes that step before every online command, so the host's own
``alembic upgrade heads`` works from every state; :func:`upgrade_composed` takes it too, for
hosts that migrate from code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, inspect, text

from postkit.migrations.runner import (
    OPTIONAL_INDEXES,
    VERSION_TABLE,
    migration_connection,
    refuse_running_loop,
    run_alembic,
)
from postkit.urls import normalize_database_url

__all__ = [
    "HOST_VERSION_TABLE",
    "DatabaseHistory",
    "adopt_standalone_history",
    "inspect_history",
    "run_env",
    "upgrade_composed",
    "upgrade_composed_async",
]

HOST_VERSION_TABLE = "alembic_version"
"""Alembic's default version table: the one a composed history records both branches in."""
POSTKIT_MARKER_TABLE = "postkit_users"
"""The table whose presence says postkit's schema is installed (its first revision creates it)."""

IncludeObject = Callable[[Any, "str | None", str, bool, Any], bool]


# --- env.py -----------------------------------------------------------------------------------


def run_env(
    target_metadata: MetaData | Sequence[MetaData] | None = None,
    *,
    url: str | None = None,
    version_table: str = HOST_VERSION_TABLE,
    include_object: IncludeObject | None = None,
    **options: Any,
) -> None:
    """Everything an Alembic ``env.py`` does, for a history that contains postkit's revisions.

    A host's ``env.py`` is then::

        from postkit.migrations import run_env
        from myapp.models import Base

        run_env(Base.metadata)

    Online, it uses the connection handed over in ``config.attributes["connection"]`` (by
    :func:`run_alembic` or :func:`upgrade_composed`) or opens its own to ``url`` (default: the
    config's ``sqlalchemy.url``), under the same advisory lock and SQLite foreign-key handling as
    ``postkit db upgrade``. Before running the command it adopts a database postkit migrated on
    its own (:func:`adopt_standalone_history`), so ``alembic upgrade heads`` works from every
    starting state. Offline (``--sql``) it renders SQL for ``url``.

    :param target_metadata: the host's models (one ``MetaData`` or several). postkit's own
        metadata is added, so autogenerate knows postkit's tables instead of proposing to drop
        them, and ``alembic check`` compares them too.
    :param url: the database, when no connection is handed over; any URL postkit accepts.
    :param version_table: the host's version table (Alembic's default ``alembic_version``).
    :param include_object: the host's own autogenerate filter; postkit's filter (its optional
        search indexes, its standalone version table) applies as well.
    :param options: further ``context.configure`` options; they override postkit's defaults
        (``render_as_batch=True``, ``compare_type=True``).

    Run by the ``alembic`` command with an ini file that has logging sections, it configures
    logging from them first, as Alembic's own templates do (so ``alembic upgrade`` prints what it
    runs); handed a connection from code, it leaves the application's logging alone.
    """
    from alembic import context

    from postkit.models import metadata as postkit_metadata

    config = context.config
    if config.attributes.get("connection") is None:
        _configure_logging(config)
    settings: dict[str, Any] = {
        "target_metadata": _metadata_list(target_metadata, postkit_metadata),
        "version_table": version_table,
        "include_object": _with_postkit_filter(include_object),
        "render_as_batch": True,  # SQLite alters tables by copying them
        "compare_type": True,
        **options,
    }

    def run(connection: Connection) -> None:
        if version_table != VERSION_TABLE:
            adopt_standalone_history(config, connection=connection, version_table=version_table)
        context.configure(connection=connection, **settings)
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(url=_database_url(config, url), literal_binds=True, **settings)
        with context.begin_transaction():
            context.run_migrations()
    elif (shared := config.attributes.get("connection")) is not None:
        run(shared)
    else:
        asyncio.run(_run_on_own_connection(_database_url(config, url), run))


def _configure_logging(config: Config) -> None:
    """``fileConfig`` from the ini's ``[loggers]`` sections, when it has them."""
    import configparser
    from logging.config import fileConfig

    if not config.config_file_name:
        return
    parser = configparser.ConfigParser()
    parser.read(config.config_file_name)
    if parser.has_section("loggers"):
        fileConfig(config.config_file_name, disable_existing_loggers=False)


async def _run_on_own_connection(url: str, run: Callable[[Connection], None]) -> None:
    async with migration_connection(url) as connection:
        await connection.run_sync(run)


def _metadata_list(
    target: MetaData | Sequence[MetaData] | None, postkit_metadata: MetaData
) -> list[MetaData]:
    given = [] if target is None else [target] if isinstance(target, MetaData) else list(target)
    return [*given, *([] if any(m is postkit_metadata for m in given) else [postkit_metadata])]


def _with_postkit_filter(host_filter: IncludeObject | None) -> IncludeObject:
    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        # The models cannot declare the pg_trgm indexes; a standalone version table left over
        # from before adoption is no model's table either.
        if type_ == "index" and name in OPTIONAL_INDEXES:
            return False
        if type_ == "table" and name == VERSION_TABLE:
            return False
        return host_filter is None or host_filter(obj, name, type_, reflected, compare_to)

    return include_object


def _database_url(config: Config, url: str | None) -> str:
    found = url or config.get_main_option("sqlalchemy.url")
    if not found:
        raise CommandError(
            "no database URL: pass url= (to run_env or upgrade_composed) or set sqlalchemy.url"
        )
    return normalize_database_url(found)


# --- Adoption ---------------------------------------------------------------------------------


def adopt_standalone_history(
    config: Config,
    *,
    connection: Connection | None = None,
    version_table: str = HOST_VERSION_TABLE,
) -> list[str]:
    """Move postkit's standalone record into the host's version table; drop the standalone one.

    Each revision ``postkit_alembic_version`` records becomes a head in ``version_table``,
    unless the host's history already has it (or a later one) applied, as after a manual
    ``alembic stamp``; then the stale table just goes. The host's own heads stay as they are.
    Nothing happens when there is no standalone table. Safe to call before every command.

    :param config: the host's Alembic config; its ``version_locations`` must include postkit's
        (``postkit:migrations/versions``).
    :param connection: where to work; default ``config.attributes["connection"]`` (as
        :func:`run_alembic` sets it).
    :param version_table: the host's version table.
    :returns: the revisions newly recorded in the host's version table.
    :raises alembic.util.CommandError: the host's history does not contain the recorded revision.
    """
    connection = connection if connection is not None else config.attributes["connection"]
    if not inspect(connection).has_table(VERSION_TABLE):
        return []
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
    recorded = [str(row[0]) for row in rows]
    script = ScriptDirectory.from_config(config)
    known = {known.revision for known in script.walk_revisions()}
    for revision in recorded:
        if revision not in known:
            raise CommandError(
                f"{VERSION_TABLE} records {revision!r}, which this Alembic history does not "
                f"contain: add postkit's revisions to version_locations "
                f"(postkit:migrations/versions) before adopting the database"
            )
    host = MigrationContext.configure(connection, opts={"version_table": version_table})
    applied = _ancestors(script, host.get_current_heads())
    adopted = [revision for revision in recorded if revision not in applied]
    for revision in adopted:
        host.stamp(script, revision)
    connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    return adopted


def _ancestors(script: ScriptDirectory, heads: Iterable[str]) -> set[str]:
    """``heads`` and every revision they imply, through ``down_revision`` and ``depends_on``."""
    seen: set[str] = set()
    todo = list(heads)
    while todo:
        revision = script.get_revision(todo.pop())
        if revision is None or revision.revision in seen:
            continue
        seen.add(revision.revision)
        for parent in (*_as_tuple(revision.down_revision), *_as_tuple(revision.dependencies)):
            todo.extend(found.revision for found in script.get_revisions(parent) if found)
    return seen


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


# --- The one call -----------------------------------------------------------------------------


def upgrade_composed(
    config: Config,
    revision: str = "heads",
    *,
    url: str | None = None,
    version_table: str = HOST_VERSION_TABLE,
) -> None:
    """Bring a host database to ``revision`` of the composed history, from any starting state.

    For scripts and release steps (not inside an event loop: await
    :func:`upgrade_composed_async` there). It adopts a database postkit migrated on its own,
    then runs ``alembic upgrade`` for every branch, on one connection, in one transaction, under
    postkit's advisory lock on PostgreSQL.

    :param config: the host's Alembic config (``Config("alembic.ini")`` or built in code).
    :param revision: default ``"heads"``: the host's branch and postkit's.
    :param url: the database; default: the config's ``sqlalchemy.url``.
    :param version_table: the host's version table, when its ``env.py`` names another.
    """
    refuse_running_loop("upgrade_composed", "upgrade_composed_async")
    asyncio.run(upgrade_composed_async(config, revision, url=url, version_table=version_table))


async def upgrade_composed_async(
    config: Config,
    revision: str = "heads",
    *,
    url: str | None = None,
    version_table: str = HOST_VERSION_TABLE,
) -> None:
    """:func:`upgrade_composed` from inside a running event loop (a lifespan, an async script)."""
    await run_alembic(
        _database_url(config, url), _adopt_then_upgrade, revision, version_table, config=config
    )


def _adopt_then_upgrade(config: Config, revision: str, version_table: str) -> None:
    # Adopting here too keeps the call right for hosts whose env.py does not use run_env.
    adopt_standalone_history(config, version_table=version_table)
    command.upgrade(config, revision)


# --- What a database holds (for `postkit db ...`) ---------------------------------------------


@dataclass(frozen=True)
class DatabaseHistory:
    """Which Alembic records a database holds, as far as postkit's tables are concerned."""

    standalone: tuple[str, ...] | None
    """The revisions in ``postkit_alembic_version``, or ``None`` when that table is absent."""
    postkit_tables: bool
    """Whether postkit's schema is installed (``postkit_users`` exists)."""
    other_version_tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Every other Alembic version table and the revisions it records."""

    @property
    def composed(self) -> bool:
        """postkit's tables belong to another history: a version table other than postkit's
        names a postkit revision, or the tables exist while another history is recorded and
        postkit's own record is missing."""
        if any(
            revision.startswith("postkit_")
            for revisions in self.other_version_tables.values()
            for revision in revisions
        ):
            return True
        return self.postkit_tables and not self.standalone and bool(self.other_version_tables)

    @property
    def unrecorded(self) -> bool:
        """postkit's tables exist but no history records them at all."""
        return self.postkit_tables and not self.standalone and not self.other_version_tables


def inspect_history(connection: Connection) -> DatabaseHistory:
    """Read which version tables ``connection``'s database has and what they record."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    standalone = _recorded(connection, VERSION_TABLE) if VERSION_TABLE in tables else None
    others = {
        name: _recorded(connection, name)
        for name in sorted(tables - {VERSION_TABLE})
        if [column["name"] for column in inspector.get_columns(name)] == ["version_num"]
    }
    return DatabaseHistory(
        standalone=standalone,
        postkit_tables=POSTKIT_MARKER_TABLE in tables,
        other_version_tables=others,
    )


def _recorded(connection: Connection, table: str) -> tuple[str, ...]:
    rows = connection.execute(text(f'SELECT version_num FROM "{table}"'))  # noqa: S608
    return tuple(sorted(str(row[0]) for row in rows))
