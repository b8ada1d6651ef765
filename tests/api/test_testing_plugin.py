"""postkit.testing, run by pytest itself (pytester) against host projects, on both databases.

Two hosts: a small one written here (postkit's own history, routes of its own under a prefix),
and docs/examples/migrations_host, the notes app, whose own table references postkit_users
and must exist in the test database (the reported bug: ``no such table``), whose tests are the
samples docs/testing.md shows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.databases import POSTGRES_ENV, postgres_server_url, require_postgres, run_sql
from tests.support.paths import DOCS_EXAMPLES

pytest_plugins = ["pytester"]

NOTES_HOST = DOCS_EXAMPLES / "migrations_host"
INI = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"

SMALL_HOST_CONFTEST = """
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from postkit import PostKit, User

pytest_plugins = ["postkit.testing"]


def create_app(settings):
    kit = PostKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    app.state.kit = kit
    app.include_router(kit.router, prefix="/v1")
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]

    @app.get("/v1/stats")
    async def stats(session: Session, user: Annotated[User, Depends(kit.current_user)]):
        users = await session.scalar(select(func.count()).select_from(User))
        return {"users": users, "me": user.username}

    return app


@pytest.fixture
def postkit_app_factory():
    return create_app
"""

SMALL_HOST_TESTS = """
import pytest


@pytest.mark.parametrize("run", [1, 2])  # the second run sees an empty database again
async def test_each_test_starts_empty(run, postkit_make_user, postkit_auth_client):
    ada, _ = await postkit_make_user(username="ada")
    await postkit_make_user(username="bob")
    client = await postkit_auth_client(ada)
    response = await client.get("/v1/stats")
    assert response.status_code == 200, response.text
    assert response.json() == {"users": 2, "me": "ada"}


async def test_login_follows_the_prefix(postkit_client, postkit_make_user, postkit_login):
    made = await postkit_make_user(email="grace@example.com", password="correct horse staple")
    headers = await postkit_login(made)
    me = await postkit_client.get("/v1/users/me", headers=headers)
    assert me.json()["email"] == "grace@example.com"
    assert (await postkit_client.get("/v1/users/me")).status_code == 401


async def test_a_wrong_password_fails_the_login(postkit_make_user, postkit_login):
    made = await postkit_make_user()
    with pytest.raises(AssertionError, match="login failed: 401"):
        await postkit_login(made, password="not the password")


async def test_logout_everywhere_revokes_act_as_tokens(postkit_client, postkit_make_user,
                                                       postkit_act_as):
    user, _ = await postkit_make_user()
    first, second = await postkit_act_as(user), await postkit_act_as(user)
    assert (await postkit_client.post("/v1/logout/all", headers=first)).status_code == 204
    assert (await postkit_client.get("/v1/users/me", headers=second)).status_code == 401


async def test_via_login(postkit_make_user, postkit_auth_client):
    made = await postkit_make_user(username="linus")
    client = await postkit_auth_client(made, via_login=True)
    assert (await client.get("/v1/stats")).json()["me"] == "linus"


def test_settings_are_for_tests(postkit_settings, postkit_backend, postkit_database_url):
    assert postkit_settings.bcrypt_rounds == 4
    assert postkit_settings.auto_migrate is False
    assert postkit_settings.database_url.startswith(
        "sqlite" if postkit_backend == "sqlite" else "postgresql"
    )
    with open("urls.txt", "a") as urls:
        urls.write(postkit_database_url + "\\n")
"""


def small_host(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SMALL_HOST_CONFTEST)
    pytester.makepyfile(test_host=SMALL_HOST_TESTS)
    pytester.makeini(INI)


def notes_host(pytester: pytest.Pytester) -> None:
    """Copy the notes app (its alembic.ini, history, models, app, pyproject and tests)."""
    shutil.copytree(
        NOTES_HOST, pytester.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    return result.parseoutcomes()


def test_small_host_runs_on_sqlite_without_a_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    small_host(pytester)
    result = pytester.runpytest("-v")
    assert outcomes(result) == {"passed": 7}, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_each_test_starts_empty?sqlite-1? PASSED*"])
    result.stdout.no_fnmatch_line("*postgresql*")


def test_the_plugin_loads_with_dash_p(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    small_host(pytester)
    conftest = pytester.path / "conftest.py"
    conftest.write_text(conftest.read_text().replace('pytest_plugins = ["postkit.testing"]', ""))
    assert outcomes(pytester.runpytest("-p", "postkit.testing")) == {"passed": 7}
    # Without it, none of the fixtures exist.
    assert "fixture 'postkit_make_user' not found" in pytester.runpytest().stdout.str()


@pytest.mark.postgres_only
def test_small_host_runs_on_both_and_drops_its_postgres_database(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgres("postkit.testing on PostgreSQL")
    server = postgres_server_url()
    assert server is not None
    monkeypatch.delenv(POSTGRES_ENV)  # given on the command line instead
    small_host(pytester)
    result = pytester.runpytest("-v", f"--postkit-postgres-url={server}")
    assert outcomes(result) == {"passed": 14}, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_via_login?sqlite? PASSED*", "*test_via_login?postgres*"])
    urls = (pytester.path / "urls.txt").read_text().split()
    postgres = [url for url in urls if url.startswith("postgresql")]
    assert len(postgres) == 1
    name = postgres[0].rsplit("/", 1)[1]
    assert name.startswith("postkit_testing_")
    rows = run_sql(server, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'")
    assert rows[0][0] == 0  # dropped at the end of the session


@pytest.mark.postgres_only
def test_the_backend_can_be_chosen(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgres("postkit.testing on PostgreSQL")
    small_host(pytester)
    only_postgres = pytester.runpytest("-v", "--postkit-backends=postgresql")
    assert outcomes(only_postgres) == {"passed": 7}, only_postgres.stdout.str()
    only_postgres.stdout.no_fnmatch_line("*sqlite*")
    # The ini option works as well; the command line wins over it.
    pytester.makeini(INI + "postkit_backends = sqlite\n")
    assert "postgresql" not in pytester.runpytest("-v").stdout.str()
    assert outcomes(pytester.runpytest("--postkit-backends", "sqlite,postgresql")) == {"passed": 14}


def test_one_test_can_ask_for_postgresql(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    small_host(pytester)
    pytester.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.postkit_backends("postgresql")
        def test_needs_postgres(postkit_backend):
            assert postkit_backend == "postgresql"
        """
    )
    result = pytester.runpytest("-rs", "--strict-markers", "test_marker.py")
    assert outcomes(result) == {"skipped": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(["*no PostgreSQL server: set --postkit-postgres-url*"])


def test_a_wrong_choice_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    small_host(pytester)
    unknown = pytester.runpytest("--postkit-backends=mysql")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["*unknown database mysql; choose among sqlite, postgresql*"])
    no_server = pytester.runpytest("--postkit-backends=postgresql")
    assert no_server.ret == pytest.ExitCode.USAGE_ERROR
    no_server.stderr.fnmatch_lines(["*no server is given: set --postkit-postgres-url*"])


def test_an_app_without_its_kit_in_state_fails_clearly(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    small_host(pytester)
    conftest = pytester.path / "conftest.py"
    conftest.write_text(conftest.read_text().replace("    app.state.kit = kit\n", ""))
    result = pytester.runpytest("-k", "via_login")
    assert outcomes(result) == {"errors": 1, "deselected": 6}, result.stdout.str()
    result.stdout.fnmatch_lines(["*the app has no PostKit in app.state*app.state.kit = kit*"])


def override_settings(pytester: pytest.Pytester, overrides: str) -> Path:
    """Give the host's conftest a ``postkit_settings`` override with ``overrides`` (keyword
    arguments, as source) and return the conftest. It imports from postkit.testing before
    pytest loads it as a plugin."""
    conftest = pytester.path / "conftest.py"
    conftest.write_text(
        "from postkit.testing import settings_for_tests\n"
        + conftest.read_text()
        + "\n\n@pytest.fixture\n"
        + "def postkit_settings(postkit_database_url):\n"
        + f"    return settings_for_tests(postkit_database_url, {overrides})\n"
    )
    return conftest


def test_overriding_the_settings(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    small_host(pytester)
    conftest = override_settings(pytester, "public_reads=True")
    pytester.makepyfile(
        test_public="""
        async def test_anonymous_feed(postkit_client):
            assert (await postkit_client.get("/v1/posts")).status_code == 200
        """
    )
    result = pytester.runpytest("-W", "error::pytest.PytestAssertRewriteWarning", "test_public.py")
    assert outcomes(result) == {"passed": 1}, result.stdout.str()
    # Without the override, anonymous reads are refused: the override is what made it pass.
    conftest.write_text(conftest.read_text().replace("public_reads=True", "public_reads=False"))
    assert outcomes(pytester.runpytest("test_public.py")) == {"failed": 1}


def test_strict_asyncio_mode_with_marked_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    small_host(pytester)
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    (pytester.path / "test_host.py").unlink()
    pytester.makepyfile(
        test_strict="""
        import pytest

        @pytest.mark.asyncio
        async def test_marked(postkit_make_user, postkit_auth_client):
            client = await postkit_auth_client((await postkit_make_user(username="sam")).user)
            assert (await client.get("/v1/stats")).json() == {"users": 1, "me": "sam"}
        """
    )
    result = pytester.runpytest()
    assert outcomes(result) == {"passed": 1}, result.stdout.str()


# --- The notes app: a host whose own history predates postkit ----------------------------------


def test_notes_host_without_its_history_has_no_notes_table(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reported bug, reproduced: postkit's history alone has no ``notes`` table."""
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    notes_host(pytester)
    result = pytester.runpytest("-o", "postkit_alembic_ini=", "-k", "belongs_to_its_author")
    assert outcomes(result) == {"failed": 1, "deselected": 4}, result.stdout.str()
    result.stdout.fnmatch_lines(["*no such table: notes*"])


def test_notes_host_samples_pass_on_sqlite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    notes_host(pytester)
    result = pytester.runpytest("-v")
    assert outcomes(result) == {"passed": 5}, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_a_note_belongs_to_its_author?sqlite? PASSED*"])


@pytest.mark.postgres_only
def test_notes_host_samples_pass_on_sqlite_and_postgresql(pytester: pytest.Pytester) -> None:
    require_postgres("postkit.testing on PostgreSQL")
    notes_host(pytester)
    result = pytester.runpytest("-v")  # POSTKIT_TEST_POSTGRES_URL names the server
    assert outcomes(result) == {"passed": 10}, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*test_every_test_starts_empty?sqlite? PASSED*",
            "*test_a_note_belongs_to_its_author?postgresql? PASSED*",
            "*test_every_test_starts_empty?postgresql? PASSED*",
        ]
    )


def test_the_outbox_catches_the_apps_mail(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    small_host(pytester)
    override_settings(pytester, "email_enabled=True, public_base_url='https://app.test'")
    pytester.makepyfile(
        test_host_mail="""
        async def test_a_reset_link_is_mailed(postkit_client, postkit_make_user, postkit_outbox):
            made = await postkit_make_user(email="ann@example.com")
            await postkit_outbox.wait_for(1)  # the verification mail of the registration
            forgot = await postkit_client.post(
                "/v1/password/forgot", json={"email": "ann@example.com"}
            )
            assert forgot.status_code == 202
            sent = await postkit_outbox.wait_for(2)
            assert [message.to for message in sent] == ["ann@example.com"] * 2
            assert "https://app.test/reset-password?token=" in sent[-1].text
        """
    )
    result = pytester.runpytest("test_host_mail.py")
    assert outcomes(result) == {"passed": 1}, result.stdout.str()
