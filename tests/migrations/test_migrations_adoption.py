"""A host with an Alembic history older than postkit adopts postkit, from every starting state.

The host is docs/examples/migrations_host (the files docs/migrations.md shows): ``notes_0001``
predates postkit; ``notes_0002`` adds a foreign key to ``postkit_users`` and depends on
``postkit_0001``. Each state a database can be in when the composed history first meets it is
brought to the heads by the one documented call (``upgrade_composed``, sync and async) and by
the host's own ``alembic upgrade heads``, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from postkit.migrations import (
    VERSION_TABLE,
    run_alembic,
    upgrade,
    upgrade_composed,
    upgrade_composed_async,
)
from tests.support.databases import POSTKIT_HEAD, POSTKIT_TABLES, run_sql, table_names
from tests.support.paths import DOCS_EXAMPLES
from tests.support.servers import clean_env

HOST = DOCS_EXAMPLES / "migrations_host"
HOST_TABLE = "notes"


def host_config(host: Path = HOST) -> Config:
    return Config(str(host / "alembic.ini"))


def recorded(url: str, table: str = "alembic_version") -> list[str]:
    return sorted(row[0] for row in run_sql(url, f"SELECT version_num FROM {table}"))


def host_alembic(url: str, operation: Callable[..., object], *args: str) -> None:
    """An Alembic command on the host's history, on a connection postkit's runner hands over."""
    asyncio.run(run_alembic(url, operation, *args, config=host_config()))


def add_user(url: str) -> None:
    run_sql(
        url,
        "INSERT INTO postkit_users (email, username, password_hash) "
        "VALUES ('kept@example.com', 'kept', 'x')",
    )


def add_note(url: str) -> None:
    run_sql(url, "INSERT INTO notes (title) VALUES ('written before postkit')")


# --- The starting states ------------------------------------------------------------------------


def empty(url: str) -> None:
    """(a) A brand-new database."""


def standalone(url: str) -> None:
    """(b) postkit migrated alone (`auto_migrate`, `postkit db upgrade`); the host's history has
    not touched the database yet."""
    upgrade(url)
    add_user(url)


def standalone_beside_host_revisions(url: str) -> None:
    """(b) The host's own revisions and, beside them, postkit migrated alone: the issue's app."""
    host_alembic(url, command.upgrade, "notes_0001")
    add_note(url)
    upgrade(url)
    add_user(url)


def host_revisions_only(url: str) -> None:
    """(c) The host at its own revisions, from before postkit was added."""
    host_alembic(url, command.upgrade, "notes_0001")
    add_note(url)


def composed(url: str) -> None:
    """(d) Already composed."""
    host_alembic(url, command.upgrade, "heads")
    add_user(url)
    add_note(url)


def composed_with_a_stale_table(url: str) -> None:
    """(d) Composed by hand (`alembic stamp postkit_0001`, then `upgrade heads`), which left
    postkit's standalone version table behind."""
    composed(url)
    run_sql(
        url,
        f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('postkit_0001')",
    )


STATES = [
    empty,
    standalone,
    standalone_beside_host_revisions,
    host_revisions_only,
    composed,
    composed_with_a_stale_table,
]


# --- The ways to bring a database to the heads ------------------------------------------------


def one_call(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    upgrade_composed(host_config(), url=url)


def one_call_awaited(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(upgrade_composed_async(host_config(), url=url))  # inside a running loop


def alembic_upgrade_heads(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`alembic upgrade heads` through Alembic's command API: env.py opens its own connection."""
    monkeypatch.setenv("DATABASE_URL", url)
    command.upgrade(host_config(), "heads")


WAYS = [one_call, one_call_awaited, alembic_upgrade_heads]


def assert_at_heads(url: str, *, user: bool, note: bool) -> None:
    tables = table_names(url)
    assert VERSION_TABLE not in tables  # adopted or never there: one history governs
    assert {*POSTKIT_TABLES, HOST_TABLE, "alembic_version"} <= tables
    # notes_0002 depends on postkit_0001 only; postkit's own branch has its head recorded too.
    assert recorded(url) == sorted(["notes_0002", POSTKIT_HEAD])
    users = run_sql(url, "SELECT username FROM postkit_users")
    assert users == ([("kept",)] if user else [])
    notes = run_sql(url, "SELECT title, author_id FROM notes")
    assert notes == ([("written before postkit", None)] if note else [])
    host_alembic(url, command.check)  # the models and the composed history agree


@pytest.mark.parametrize("way", WAYS, ids=lambda way: way.__name__)
@pytest.mark.parametrize("state", STATES, ids=lambda state: state.__name__)
def test_every_starting_state_reaches_the_heads(empty_database_url, monkeypatch, state, way):
    url = empty_database_url
    state(url)
    had_user = "postkit_users" in table_names(url)
    had_note = HOST_TABLE in table_names(url)

    way(url, monkeypatch)
    assert_at_heads(url, user=had_user, note=had_note)

    way(url, monkeypatch)  # a second worker, or the next release: nothing to do
    assert_at_heads(url, user=had_user, note=had_note)

    # The host's branch goes down on its own, a step at a time; postkit's tables and rows stay.
    host_alembic(url, command.downgrade, "notes@-1")
    assert recorded(url) == sorted(["notes_0001", POSTKIT_HEAD])
    with pytest.raises(Exception, match="author_id"):
        run_sql(url, "SELECT author_id FROM notes")
    host_alembic(url, command.downgrade, "notes@base")
    tables = table_names(url)
    assert HOST_TABLE not in tables
    assert set(POSTKIT_TABLES) <= tables
    assert recorded(url) == [POSTKIT_HEAD]
    assert len(run_sql(url, "SELECT id FROM postkit_users")) == int(had_user)

    way(url, monkeypatch)  # and back up again
    assert recorded(url) == sorted(["notes_0002", POSTKIT_HEAD])


def test_the_adopted_foreign_key_holds(empty_database_url):
    """After adoption, notes_0002's foreign key points at the users postkit created alone."""
    url = empty_database_url
    standalone_beside_host_revisions(url)
    upgrade_composed(host_config(), url=url)
    user_id = run_sql(url, "SELECT id FROM postkit_users")[0][0]
    run_sql(url, f"UPDATE notes SET author_id = {user_id}")
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        run_sql(url, "UPDATE notes SET author_id = 424242")
    run_sql(url, f"DELETE FROM postkit_users WHERE id = {user_id}")
    assert run_sql(url, "SELECT title, author_id FROM notes") == [("written before postkit", None)]


def test_adoption_needs_postkits_revisions_in_the_history(empty_database_url, tmp_path):
    """A host that forgot `postkit:migrations/versions` is told so, and nothing changes."""
    from alembic.util import CommandError

    url = empty_database_url
    standalone(url)
    config = host_config()
    config.set_main_option("version_locations", str(tmp_path))
    with pytest.raises(CommandError, match="version_locations"):
        upgrade_composed(config, url=url)
    assert recorded(url, VERSION_TABLE) == [POSTKIT_HEAD]


async def test_the_one_call_refuses_to_nest_a_loop(empty_database_url):
    with pytest.raises(RuntimeError, match="upgrade_composed_async"):
        upgrade_composed(host_config(), url=empty_database_url)


# --- The real `alembic` command and the docs' release step --------------------------------------


def alembic_cli(host: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(host / "alembic.ini"), *args],
        cwd=host,
        env=clean_env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_alembic_upgrade_heads_adopts_an_auto_migrated_database(empty_database_url, tmp_path):
    """The issue's steps: the host's own revision applied, postkit set up by auto_migrate, then
    postkit composed in and `alembic upgrade heads`, with nothing else to run."""
    url = empty_database_url
    standalone_beside_host_revisions(url)
    upgraded = alembic_cli(HOST, url, "upgrade", "heads")
    assert upgraded.returncode == 0, upgraded.stderr
    current = alembic_cli(HOST, url, "current")
    assert current.returncode == 0, current.stderr
    assert set(current.stdout.split("\n")) >= {"notes_0002 (head)", f"{POSTKIT_HEAD} (head)"}
    assert_at_heads(url, user=True, note=True)


def test_the_docs_release_step(empty_database_url, tmp_path):
    url = empty_database_url
    standalone(url)
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "notesapp.migrate"],
            cwd=tmp_path,
            env=clean_env(DATABASE_URL=url, PYTHONPATH=str(HOST)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert_at_heads(url, user=True, note=False)


async def test_the_docs_release_step_inside_a_loop(empty_database_url, monkeypatch):
    monkeypatch.syspath_prepend(str(HOST))
    from notesapp.migrate import migrate_async

    await migrate_async(empty_database_url)
    names = await asyncio.to_thread(table_names, empty_database_url)
    assert {*POSTKIT_TABLES, HOST_TABLE} <= names


# --- New revisions in a composed history ------------------------------------------------------

SLUG_COLUMN = """
    # A later change to the app's models, made after postkit was composed in.
    slug: Mapped[str | None] = mapped_column(String(50), unique=True)
"""


def test_new_revisions_in_a_composed_history(empty_database_url, tmp_path):
    """What the docs say about `alembic revision` once postkit's branch is in the history."""
    host = tmp_path / "host"
    shutil.copytree(HOST, host, ignore=shutil.ignore_patterns("__pycache__"))
    versions = host / "notesapp" / "migrations" / "versions"
    url = empty_database_url
    standalone_beside_host_revisions(url)

    # Behind the heads: upgrade first (env.py adopts the standalone record as it does so).
    behind = alembic_cli(host, url, "revision", "--autogenerate", "--head", "notes@head", "-m", "x")
    assert behind.returncode != 0
    assert "Target database is not up to date" in behind.stdout + behind.stderr
    assert alembic_cli(host, url, "upgrade", "heads").returncode == 0

    # postkit's branch is a second head: a new revision must say which branch it extends.
    ambiguous = alembic_cli(host, url, "revision", "--autogenerate", "-m", "x")
    assert ambiguous.returncode != 0
    assert "Multiple heads are present" in ambiguous.stdout + ambiguous.stderr

    def autogenerate() -> tuple[Path, str]:
        """`alembic revision --autogenerate --head notes@head`: the new file and its text."""
        made = alembic_cli(
            host,
            url,
            "revision",
            "--autogenerate",
            "--head",
            "notes@head",
            "--rev-id",
            "notes_0003",
        )
        assert made.returncode == 0, made.stderr
        (generated,) = versions.glob("notes_0003_*.py")
        return generated, generated.read_text()

    # Nothing changed: autogenerate knows postkit's tables and proposes nothing for them.
    generated, source = autogenerate()
    assert "down_revision: str | Sequence[str] | None = 'notes_0002'" in source
    assert "postkit_" not in source
    assert source.count("    pass") == 2
    generated.unlink()

    # A unique column: the naming convention names the constraint, so its drop can run.
    models = host / "notesapp" / "models.py"
    models.write_text(models.read_text() + SLUG_COLUMN)
    _generated, source = autogenerate()
    assert "uq_notes_slug" in source
    assert "constraint(None" not in source
    assert "postkit_" not in source
    applied = alembic_cli(host, url, "upgrade", "heads")
    assert applied.returncode == 0, applied.stderr
    assert recorded(url) == sorted(["notes_0003", POSTKIT_HEAD])
    reverted = alembic_cli(host, url, "downgrade", "notes@-1")
    assert reverted.returncode == 0, reverted.stderr
    assert recorded(url) == sorted(["notes_0002", POSTKIT_HEAD])
    assert run_sql(url, "SELECT username FROM postkit_users") == [("kept",)]


def test_standalone_upgrade_refuses_a_composed_database(empty_database_url):
    """auto_migrate left on after composing: the kit's start-up says what to do instead of
    failing on postkit's existing tables."""
    from alembic.util import CommandError

    composed(empty_database_url)
    with pytest.raises(CommandError, match=r"composed Alembic history \(alembic_version\)"):
        upgrade(empty_database_url)
    assert VERSION_TABLE not in table_names(empty_database_url)
