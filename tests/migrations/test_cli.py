"""The ``postkit`` command, as a subprocess and through ``postkit.cli.main``, on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from postkit import __version__
from postkit.cli import EXIT_FAILURE, EXIT_USAGE, main
from postkit.migrations import VERSION_TABLE, upgrade
from tests.support.databases import (
    INITIAL_TABLES,
    POSTKIT_HEAD,
    POSTKIT_TABLES,
    postgres_server_url,
    require_postgres,
    run_sql,
    table_names,
)
from tests.support.paths import DOCS_EXAMPLES
from tests.support.servers import clean_env


def postkit(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m postkit`` as its own process, without any inherited postkit settings."""
    return subprocess.run(
        [sys.executable, "-m", "postkit", *args],
        cwd=cwd,
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    # Alembic's progress lines ("Running upgrade ...") may come first; the error is one line.
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("Running ")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("postkit: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A working directory without a .env file and no postkit variables in the environment."""
    for name in list(os.environ):
        if name.startswith("POSTKIT_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


# --- As a subprocess ------------------------------------------------------------------------------


def test_version_as_a_process(tmp_path):
    result = postkit("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"postkit {__version__}"


def test_upgrade_current_check_downgrade_as_a_process(empty_database_url, tmp_path):
    env = {"POSTKIT_DATABASE_URL": empty_database_url}

    upgraded = postkit("db", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade  -> postkit_0001" in upgraded.stderr
    assert f"Current revision: {POSTKIT_HEAD} (head)" in upgraded.stdout
    assert set(POSTKIT_TABLES) <= table_names(empty_database_url)

    current = postkit("db", "current", cwd=tmp_path, env=env)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"{POSTKIT_HEAD} (head)"

    checked = postkit("db", "check", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert "No new upgrade operations detected." in checked.stdout

    downgraded = postkit("db", "downgrade", "base", cwd=tmp_path, env=env)
    assert downgraded.returncode == 0, downgraded.stderr
    assert "Current revision: (none)" in downgraded.stdout
    assert not set(POSTKIT_TABLES) & table_names(empty_database_url)


def test_unreachable_database_as_a_process(tmp_path):
    result = postkit(
        "db", "upgrade", "--database-url", "postgresql://postgres@127.0.0.1:1/x", cwd=tmp_path
    )
    assert result.returncode == EXIT_FAILURE
    assert_one_line_error(result.stderr, "cannot connect to the database", "127.0.0.1:1")


def test_bad_url_as_a_process(tmp_path):
    result = postkit("db", "current", "--database-url", "nonsense", cwd=tmp_path)
    assert result.returncode == EXIT_USAGE
    assert_one_line_error(result.stderr, "--database-url", "is not a database URL")


def test_plugins_lists_entry_point_plugins(tmp_path):
    """A distribution advertising a plugin in the "postkit" group shows up with its hooks."""
    site = tmp_path / "site"
    (site / "bookmarks_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "bookmarks_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bookmarks-plugin\nVersion: 1.0\n"
    )
    (site / "bookmarks_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[postkit]\nbookmarks = bookmarks_plugin\n"
    )
    (site / "bookmarks_plugin.py").write_text(
        textwrap.dedent(
            """
            from postkit import hookimpl

            @hookimpl
            def validate_post(data, user, existing):
                return None

            @hookimpl
            def after_vote(post, user, direction, previous):
                return None
            """
        )
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    result = postkit("plugins", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.strip().splitlines())
    assert lines["bookmarks"] == "after_vote, validate_post"
    assert lines["postkit.defaults"] == (
        "can_modify_comment, can_modify_post, comment_vote_weight, rank_score, render_email, "
        "vote_weight"
    )

    without = postkit("plugins", "--no-discover", cwd=tmp_path, env=env)
    assert without.returncode == 0, without.stderr
    assert "bookmarks" not in without.stdout
    assert "postkit.defaults" in without.stdout


def test_a_broken_plugin_is_one_line(tmp_path):
    site = tmp_path / "site"
    (site / "broken_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "broken_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n"
    )
    (site / "broken_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[postkit]\nbroken = module_that_is_not_installed\n"
    )
    result = postkit("plugins", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert result.returncode == EXIT_FAILURE
    assert_one_line_error(result.stderr, "could not load", "module_that_is_not_installed")


# --- Through main() -------------------------------------------------------------------------------


def test_history_lists_postkits_revisions(isolated, capsys):
    assert main(["db", "history"]) == 0
    out = capsys.readouterr().out
    assert "<base> -> postkit_0001 (postkit)" in out
    assert f"-> {POSTKIT_HEAD} (postkit) (head)" in out


def test_current_on_an_empty_database(empty_database_url, capsys):
    assert main(["db", "current", "--database-url", empty_database_url]) == 0
    assert capsys.readouterr().out.strip() == "(none): postkit's tables are not installed"


def test_database_url_option_before_the_action(empty_database_url, capsys):
    assert main(["db", "--database-url", empty_database_url, "upgrade"]) == 0
    assert set(POSTKIT_TABLES) <= table_names(empty_database_url)


def test_upgrade_to_an_explicit_revision_and_stamp(empty_database_url, capsys):
    assert main(["db", "upgrade", "postkit_0001", "--database-url", empty_database_url]) == 0
    out = capsys.readouterr().out
    assert "Current revision: postkit_0001" in out
    assert "(head)" not in out
    assert main(["db", "stamp", "base", "--database-url", empty_database_url]) == 0
    assert "Current revision: (none)" in capsys.readouterr().out
    # Stamping records a revision without touching the tables...
    assert table_names(empty_database_url) >= INITIAL_TABLES
    assert run_sql(empty_database_url, f"SELECT count(*) FROM {VERSION_TABLE}") == [(0,)]
    # ...so upgrading again would meet the existing tables: refused, with the way out.
    assert main(["db", "upgrade", "--database-url", empty_database_url]) == EXIT_FAILURE
    assert_one_line_error(
        capsys.readouterr().err, "postkit's tables exist", "`postkit db stamp REVISION`"
    )
    assert main(["db", "current", "--database-url", empty_database_url]) == EXIT_FAILURE
    assert_one_line_error(capsys.readouterr().err, "records no revision")
    # The advice works: record where the tables are, then upgrade the rest of the way.
    assert main(["db", "stamp", "postkit_0001", "--database-url", empty_database_url]) == 0
    assert main(["db", "upgrade", "--database-url", empty_database_url]) == 0  # postkit_0002
    assert set(POSTKIT_TABLES) <= table_names(empty_database_url)
    assert main(["db", "check", "--database-url", empty_database_url]) == 0


def test_check_reports_an_added_column(empty_database_url, capsys):
    upgrade(empty_database_url)
    run_sql(empty_database_url, "ALTER TABLE postkit_users ADD COLUMN nickname VARCHAR(20)")
    capsys.readouterr()

    assert main(["db", "check", "--database-url", empty_database_url]) == EXIT_FAILURE
    assert_one_line_error(
        capsys.readouterr().err,
        "the database schema and postkit's models disagree",
        "remove_column postkit_users nickname",
    )


def test_check_reports_a_dropped_index(empty_database_url, capsys):
    upgrade(empty_database_url)
    run_sql(empty_database_url, "DROP INDEX ix_postkit_posts_owner_id")

    assert main(["db", "check", "--database-url", empty_database_url]) == EXIT_FAILURE
    assert_one_line_error(capsys.readouterr().err, "add_index ix_postkit_posts_owner_id")


def test_check_refuses_a_database_behind_head(empty_database_url, capsys):
    assert main(["db", "check", "--database-url", empty_database_url]) == EXIT_FAILURE
    assert_one_line_error(capsys.readouterr().err, "run `postkit db upgrade` first")


def test_unknown_revision(empty_database_url, capsys):
    assert main(["db", "downgrade", "zzz", "--database-url", empty_database_url]) == EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "unknown revision 'zzz'", "postkit_0001")
    assert main(["db", "upgrade", "nope", "--database-url", empty_database_url]) == EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "unknown revision 'nope'")


def test_downgrade_one_step_relative(empty_database_url, capsys):
    upgrade(empty_database_url)
    assert main(["db", "downgrade", "-1", "--database-url", empty_database_url]) == 0
    # One step: the head is undone, the revision before it is where the database stands.
    recorded = run_sql(empty_database_url, f"SELECT version_num FROM {VERSION_TABLE}")
    assert len(recorded) == 1
    assert recorded[0][0] != POSTKIT_HEAD
    assert "postkit_users" in table_names(empty_database_url)
    assert main(["db", "downgrade", "base", "--database-url", empty_database_url]) == 0
    assert not set(POSTKIT_TABLES) & table_names(empty_database_url)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("nonsense", "is not a database URL"),
        ("mysql://user@localhost/db", "unsupported scheme 'mysql'"),
        ("postgresql+psycopg2://user@localhost/db", "'psycopg2' driver"),
        ("", "must not be empty"),
    ],
)
def test_bad_database_urls(isolated, capsys, url, fragment):
    assert main(["db", "upgrade", "--database-url", url]) == EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "--database-url", fragment)


def test_bad_url_in_the_environment_is_named(isolated, monkeypatch, capsys):
    monkeypatch.setenv("POSTKIT_DATABASE_URL", "oracle://scott@tiger/db")
    assert main(["db", "current"]) == EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "POSTKIT_DATABASE_URL", "'oracle'")


def test_sqlite_file_in_a_missing_directory(isolated, capsys):
    url = f"sqlite:///{isolated / 'missing' / 'postkit.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "does not exist")


def test_unreachable_postgres(capsys):
    url = "postgresql://postgres:secret-password@127.0.0.1:1/x"
    assert main(["db", "current", "--database-url", url]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert_one_line_error(err, "cannot connect to the database at")
    assert "secret-password" not in err


@pytest.mark.postgres_only
def test_missing_postgres_database(capsys):
    require_postgres("a database missing on a reachable server")
    server = postgres_server_url()
    assert server is not None
    url = make_url(server).set(database="postkit_no_such_database")
    argv = ["db", "upgrade", "--database-url", url.render_as_string(hide_password=False)]
    assert main(argv) == EXIT_FAILURE
    assert_one_line_error(capsys.readouterr().err, "cannot connect", "does not exist")


def test_url_from_the_environment(empty_database_url, isolated, monkeypatch, capsys):
    monkeypatch.setenv("POSTKIT_DATABASE_URL", empty_database_url)
    assert main(["db", "upgrade"]) == 0
    assert set(POSTKIT_TABLES) <= table_names(empty_database_url)
    assert not (isolated / "postkit.db").exists()


def test_url_from_a_dotenv_file(empty_database_url, isolated, capsys):
    (isolated / ".env").write_text(
        f"POSTKIT_DATABASE_URL={empty_database_url}\nPOSTKIT_SECRET_KEY=short\n"
    )
    # The short secret in .env does not matter to migrations: only the URL is read.
    assert main(["db", "upgrade"]) == 0
    assert set(POSTKIT_TABLES) <= table_names(empty_database_url)


def test_option_beats_environment(empty_database_url, isolated, monkeypatch, capsys):
    monkeypatch.setenv("POSTKIT_DATABASE_URL", "nonsense")
    assert main(["db", "upgrade", "--database-url", empty_database_url]) == 0
    assert set(POSTKIT_TABLES) <= table_names(empty_database_url)


def test_default_is_the_embedded_sqlite_file(isolated, monkeypatch, capsys):
    # DATABASE_URL belongs to the host: postkit never reads it, so the CLI and the app agree.
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/not-postkits")
    assert main(["db", "upgrade"]) == 0
    database = isolated / "postkit.db"
    assert database.exists()
    assert set(POSTKIT_TABLES) <= table_names(f"sqlite:///{database}")


def test_production_settings_without_secret_do_not_block_migrations(
    empty_database_url, isolated, monkeypatch, capsys
):
    monkeypatch.setenv("POSTKIT_ENVIRONMENT", "production")
    monkeypatch.setenv("POSTKIT_DATABASE_URL", empty_database_url)
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().err.count("secret") == 0


def test_missing_action_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["db"])
    assert exit_info.value.code == EXIT_USAGE
    assert "ACTION" in capsys.readouterr().err


# --- A database composed into a host's history --------------------------------------------------

NOTES_HOST_INI = DOCS_EXAMPLES / "migrations_host" / "alembic.ini"


@pytest.mark.parametrize("stale_table", [False, True], ids=["composed", "with_stale_table"])
def test_a_composed_database_is_refused_with_advice(empty_database_url, capsys, stale_table):
    """postkit db reads postkit_alembic_version only: on a composed database it says what to run
    instead of reporting "(none)" or creating postkit's tables a second time."""
    from alembic.config import Config

    from postkit.migrations import upgrade_composed

    config = Config(str(NOTES_HOST_INI))
    if not stale_table:
        upgrade_composed(config, url=empty_database_url)
    else:
        # The workaround on a host without a revision that needs postkit yet:
        # `alembic stamp postkit_0001` after auto_migrate, then `upgrade heads`, which left
        # postkit_alembic_version behind and recorded postkit_0001 in alembic_version.
        upgrade_composed(config, "notes_0001", url=empty_database_url)
        upgrade_composed(config, "postkit@head", url=empty_database_url)
        run_sql(
            empty_database_url,
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
            f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('postkit_0001')",
        )
    url = ["--database-url", empty_database_url]
    for action, advice in [
        (["current"], "`alembic current`"),
        (["upgrade"], "`alembic upgrade heads` or postkit.migrations.upgrade_composed()"),
        (["check"], "`alembic check`"),
        (["downgrade", "base"], "`alembic downgrade postkit@REV`"),
        (["stamp", "head"], "`alembic stamp REV`"),
    ]:
        assert main(["db", *action, *url]) == EXIT_FAILURE, action
        out, err = capsys.readouterr()
        assert "(none)" not in out
        assert_one_line_error(err, "composed Alembic history", "alembic_version", advice)
    assert set(POSTKIT_TABLES) <= table_names(empty_database_url)  # nothing was touched


def test_current_on_a_composed_database_as_a_process(empty_database_url, tmp_path):
    from alembic.config import Config

    from postkit.migrations import upgrade_composed

    upgrade_composed(Config(str(NOTES_HOST_INI)), url=empty_database_url)
    result = postkit(
        "db", "current", cwd=tmp_path, env={"POSTKIT_DATABASE_URL": empty_database_url}
    )
    assert result.returncode == EXIT_FAILURE
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "notes_0002", "`alembic current`")
