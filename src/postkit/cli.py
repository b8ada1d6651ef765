"""The ``postkit`` command: manage postkit's tables and list the installed plugins.

::

    postkit db upgrade [REV]      apply migrations (default: head)
    postkit db downgrade REV      revert migrations (``base`` removes every postkit table)
    postkit db current            the revision the database is at
    postkit db history            every revision postkit ships
    postkit db check              exit 1 when the database and postkit's models disagree
    postkit db stamp REV          record REV as applied without running anything
    postkit plugins               installed plugins and the hooks each implements
    postkit --version

These commands work on postkit's standalone history only. On a database whose postkit tables are
governed by a host's composed Alembic history they refuse (exit 1) and say what to run instead.

The database comes from ``--database-url``, else ``POSTKIT_DATABASE_URL`` (environment, then a
``.env`` file in the working directory), else postkit's embedded SQLite default: exactly the URL a
``PostKit`` built from ``PostKitSettings()`` would use. ``DATABASE_URL`` is deliberately not read,
so the command never migrates another database than the app uses.

Exit status: 0 on success, 1 when the operation failed (database unreachable, schema drift,
a migration error), 2 for a mistake in the command line or configuration (bad URL, unknown
revision). Errors are one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic_settings import BaseSettings

from postkit.__about__ import __version__
from postkit.settings import PostKitSettings

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "main"]

EXIT_FAILURE = 1
"""The operation ran and failed: unreachable database, schema drift, migration error."""
EXIT_USAGE = 2
"""The command line or the configuration is wrong: bad URL, unknown revision."""

URL_ENV = "POSTKIT_DATABASE_URL"


class CommandFailed(Exception):
    """A failure reported as one line on standard error, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


class _DatabaseSettings(BaseSettings):
    """Only the database URL, read exactly as :class:`~postkit.PostKitSettings` reads it.

    Reading the full settings would demand a secret key in production and warn about an
    ephemeral one in development; neither matters for migrations.
    """

    model_config = PostKitSettings.model_config
    database_url: str = PostKitSettings.model_fields["database_url"].default


# --- Command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``postkit`` command."""
    url_option = argparse.ArgumentParser(add_help=False)
    url_option.add_argument(
        "--database-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"database to work on (default: ${URL_ENV}, its .env entry, or ./postkit.db)",
    )

    parser = argparse.ArgumentParser(
        prog="postkit", description="Manage postkit's database tables and inspect its plugins."
    )
    parser.add_argument("--version", action="version", version=f"postkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db = commands.add_parser(
        "db", parents=[url_option], help="apply, revert and inspect postkit's migrations"
    )
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    upgrade = db_commands.add_parser(
        "upgrade", parents=[url_option], help="apply migrations up to REV (default: head)"
    )
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REV")
    upgrade.set_defaults(run=_move)

    downgrade = db_commands.add_parser(
        "downgrade",
        parents=[url_option],
        help="revert migrations down to REV ('base' removes every postkit table)",
    )
    downgrade.add_argument("revision", metavar="REV")
    downgrade.set_defaults(run=_move)

    current = db_commands.add_parser(
        "current", parents=[url_option], help="show the revision the database is at"
    )
    current.add_argument("-v", "--verbose", action="store_true", help="show revision details")
    current.set_defaults(run=_current)

    history = db_commands.add_parser("history", help="list the revisions postkit ships")
    history.add_argument("-v", "--verbose", action="store_true", help="show revision details")
    history.set_defaults(run=_history)

    check = db_commands.add_parser(
        "check",
        parents=[url_option],
        help="exit 1 when the database schema and postkit's models disagree",
    )
    check.set_defaults(run=_check)

    stamp = db_commands.add_parser(
        "stamp",
        parents=[url_option],
        help="record REV as applied without running migrations",
    )
    stamp.add_argument("revision", metavar="REV")
    stamp.set_defaults(run=_move)

    plugins = commands.add_parser(
        "plugins", help="list installed plugins and the hooks each implements"
    )
    plugins.add_argument(
        "--no-discover",
        action="store_true",
        help="skip the 'postkit' entry-point group (show only postkit's defaults)",
    )
    plugins.set_defaults(run=_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``postkit`` command with ``argv`` (default: ``sys.argv[1:]``); return the status."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        with _alembic_progress_on(sys.stderr):
            run(args)
    except CommandFailed as failure:
        print(f"postkit: error: {failure}", file=sys.stderr)
        return failure.status
    except KeyboardInterrupt:
        print("postkit: interrupted", file=sys.stderr)
        return 130
    return 0


# --- db actions -----------------------------------------------------------------------------------


def _move(args: argparse.Namespace) -> None:
    """upgrade, downgrade or stamp to ``args.revision``, then say where the database is."""
    from alembic import command

    url, config = _prepare(args, revision=args.revision)
    action = args.db_command
    _run(url, config, _standalone_only(action, getattr(command, action)), args.revision)
    _report_current(url, config)


def _current(args: argparse.Namespace) -> None:
    url, config = _prepare(args)
    describe = _standalone_only("current", _describe_current)
    for line in _run(url, config, describe, verbose=args.verbose):
        config.print_stdout(line)


def _history(args: argparse.Namespace) -> None:
    from alembic import command

    from postkit.migrations import alembic_config

    config = alembic_config()
    config.stdout = sys.stdout
    command.history(config, verbose=args.verbose)


def _check(args: argparse.Namespace) -> None:
    url, config = _prepare(args)
    _run(url, config, _standalone_only("check", _check_schema))


def _check_schema(config: Config) -> None:
    """``alembic check`` with its two failures explained (runs in the env, on the connection)."""
    from alembic import command
    from alembic.util import AutogenerateDiffsDetected, CommandError

    try:
        command.check(config)
    except AutogenerateDiffsDetected as drift:
        differences = "; ".join(_describe_difference(diff) for diff in drift.diffs)
        raise CommandFailed(
            f"the database schema and postkit's models disagree "
            f"({len(drift.diffs)} difference(s)): {differences}"
        ) from None
    except CommandError as error:
        if "not up to date" not in str(error):
            raise
        raise CommandFailed(
            "the database is not at postkit's head revision; run `postkit db upgrade` first"
        ) from None


def _plugins(args: argparse.Namespace) -> None:
    from postkit.plugins import HookRunner, build_plugin_manager

    try:
        manager = build_plugin_manager(discover=not args.no_discover)
    except Exception as error:  # an installed plugin that fails to import or to validate
        raise CommandFailed(f"could not load the installed plugins: {_first_line(error)}") from None
    described = HookRunner(manager).describe()
    width = max(len(name) for name, _hooks in described)
    for name, hooks in described:
        print(f"{name:<{width}}  {', '.join(hooks) or '(no hooks)'}")


# --- Helpers --------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace, *, revision: str | None = None) -> tuple[str, Config]:
    """The normalised database URL and an Alembic config; refuse a bad URL or revision early."""
    from postkit.migrations import alembic_config

    url = _database_url(getattr(args, "database_url", None))
    config = alembic_config(url)
    config.stdout = sys.stdout
    if revision is not None:
        _check_revision(config, revision)
    return url, config


def _database_url(option: str | None) -> str:
    from postkit.urls import normalize_database_url

    if option is not None:
        source, raw = "--database-url", option
    else:
        source, raw = URL_ENV, _DatabaseSettings().database_url
    try:
        url = normalize_database_url(raw)
    except ValueError as error:
        raise CommandFailed(f"{source} {error}", EXIT_USAGE) from None
    _check_sqlite_directory(url, source)
    return url


def _check_sqlite_directory(url: str, source: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if database.startswith("file:") or "mode=memory" in url:
        return
    directory = Path(database).expanduser().resolve().parent
    if not directory.is_dir():
        raise CommandFailed(
            f"{source} points to a SQLite file in {directory}, which does not exist",
            EXIT_USAGE,
        )


def _check_revision(config: Config, revision: str) -> None:
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError

    if revision.lstrip("+-").isdigit() or "@" in revision:
        return  # relative steps: Alembic resolves them against the database's state
    script = ScriptDirectory.from_config(config)
    try:
        script.revision_map.get_revisions(revision)
    except RevisionError:
        known = ", ".join(["head", "base", *(s.revision for s in script.walk_revisions())])
        raise CommandFailed(
            f"unknown revision {revision!r} (postkit knows: {known})", EXIT_USAGE
        ) from None


def _run(url: str, config: Config, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``operation`` through :func:`~postkit.migrations.run_alembic`; errors become lines."""
    from alembic.util import CommandError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from postkit.migrations import run_alembic

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        return asyncio.run(run_alembic(url, operation, *args, config=config, **kwargs))
    except CommandError as error:
        raise CommandFailed(_first_line(error)) from None
    except (OSError, TimeoutError) as error:
        raise CommandFailed(f"cannot connect to the database at {shown}: {error}") from None
    except DBAPIError as error:
        reason = _first_line(error.orig) if error.orig is not None else _first_line(error)
        if error.connection_invalidated or _during_connect(error):
            raise CommandFailed(f"cannot connect to the database at {shown}: {reason}") from None
        raise CommandFailed(f"database error on {shown}: {reason}") from None
    except SQLAlchemyError as error:
        raise CommandFailed(f"database error on {shown}: {_first_line(error)}") from None


def _during_connect(error: Any) -> bool:
    # SQLAlchemy wraps a failed connect without a statement; a failing migration carries one.
    return getattr(error, "statement", None) is None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _describe_current(config: Config, *, verbose: bool = False) -> list[str]:
    """Lines describing the revision(s) recorded in postkit's version table (runs in the env)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    from postkit.migrations import POSTKIT_MARKER_TABLE, VERSION_TABLE

    connection = config.attributes["connection"]
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    heads = context.get_current_heads()
    if not heads:
        if inspect(connection).has_table(POSTKIT_MARKER_TABLE):
            return ["(none): postkit's tables exist but no revision is recorded"]
        return ["(none): postkit's tables are not installed"]
    script = ScriptDirectory.from_config(config)
    lines = []
    for head in heads:
        revision = script.get_revision(head)
        lines.append(revision.cmd_format(verbose) if revision is not None else head)
    return lines


# What a host runs instead of `postkit db ACTION` on a composed database.
_COMPOSED_ALTERNATIVE = {
    "upgrade": "`alembic upgrade heads` or postkit.migrations.upgrade_composed()",
    "downgrade": "`alembic downgrade postkit@REV` (after your own revisions that need it)",
    "stamp": "`alembic stamp REV`",
    "check": "`alembic check`",
    "current": "`alembic current`",
}


def _standalone_only(action: str, operation: Callable[..., Any]) -> Callable[..., Any]:
    """``operation``, run only when postkit's standalone record governs the database.

    Otherwise it would act on the wrong record: create postkit's tables a second time, report
    "(none)" for tables that exist, or write a record the host's history does not read.
    """

    def guarded(config: Config, *args: Any, **kwargs: Any) -> Any:
        from postkit.migrations import VERSION_TABLE, inspect_history

        history = inspect_history(config.attributes["connection"])
        if history.composed:
            recorded = "; ".join(
                f"{table}: {', '.join(revisions) or 'empty'}"
                for table, revisions in history.other_version_tables.items()
            )
            raise CommandFailed(
                f"postkit's tables here belong to a composed Alembic history ({recorded}), "
                f"which `postkit db` does not manage; run {_COMPOSED_ALTERNATIVE[action]} with "
                "the host's Alembic configuration instead"
            )
        if history.unrecorded and action != "stamp":
            raise CommandFailed(
                f"postkit's tables exist but {VERSION_TABLE} records no revision; record the "
                "revision they are at with `postkit db stamp REVISION` (`postkit db history` "
                "lists them), then run `postkit db upgrade`"
            )
        return operation(config, *args, **kwargs)

    return guarded


def _report_current(url: str, config: Config) -> None:
    for line in _run(url, config, _describe_current):
        config.print_stdout(f"Current revision: {line}")


def _describe_difference(diff: Any) -> str:
    if isinstance(diff, list):  # modify_* operations come grouped per column
        return ", ".join(_describe_difference(item) for item in diff)
    operation, *objects = diff
    names = []
    for item in objects:
        name = getattr(item, "name", None)
        if isinstance(name, str):
            names.append(name)
        elif isinstance(item, str):
            names.append(item)
    return " ".join([str(operation), *names])


class _ProgressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return str(record.msg).startswith("Running ")


@contextmanager
def _alembic_progress_on(stream: TextIO) -> Iterator[None]:
    """Show Alembic's "Running upgrade a -> b" lines on ``stream`` while the command runs."""
    logger = logging.getLogger("alembic.runtime.migration")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_ProgressFilter())
    previous_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
