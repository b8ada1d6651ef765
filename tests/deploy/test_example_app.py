"""The reference app (examples/socialapp) as an integrator runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from alembic import command
from packaging.requirements import InvalidRequirement, Requirement
from pydantic import ValidationError

from tests.support.api import TEST_SECRET
from tests.support.api import TestUser as KitUser
from tests.support.databases import POSTKIT_HEAD, run_sql, table_names
from tests.support.paths import EXAMPLE_DIR
from tests.support.ports import free_port
from tests.support.servers import clean_env, live_process

PostFactory = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture(scope="module")
def socialapp() -> Iterator[ModuleType]:
    """The example's ``app`` package, imported the way uvicorn imports it (from its folder)."""
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        package = importlib.import_module("app")
        for name in ("settings", "main", "migrate", "models", "plugin"):
            importlib.import_module(f"app.{name}")
        yield package
    finally:
        sys.path.remove(str(EXAMPLE_DIR))


def app_settings(socialapp: ModuleType, **values: Any) -> Any:
    defaults: dict[str, Any] = {"secret_key": TEST_SECRET, "bcrypt_rounds": 4}
    defaults.update(values)
    return socialapp.settings.AppSettings(_env_file=None, **defaults)


@pytest.fixture
async def example(
    socialapp: ModuleType, empty_database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The example app on a database with no tables: its start-up must migrate everything."""
    application = socialapp.main.create_app(
        app_settings(socialapp, database_url=empty_database_url)
    )
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def create_post(example: httpx.AsyncClient) -> PostFactory:
    async def create(user: KitUser, **fields: Any) -> dict[str, Any]:
        body = {"title": "Hello", "content": "First post", **fields}
        response = await example.post("/posts", json=body, headers=user.headers)
        assert response.status_code == 201, response.text
        post: dict[str, Any] = response.json()
        return post

    return create


async def test_whole_api_works_through_the_example(
    example: httpx.AsyncClient,
    new_user: Callable[..., Awaitable[KitUser]],
    create_post: PostFactory,
) -> None:
    health = await example.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok"}

    alice = await new_user(example)
    bob = await new_user(example)
    me = await example.get("/users/me", headers=alice.headers)
    assert me.status_code == 200
    assert me.json()["email"] == alice.email

    post = await create_post(alice, title="Postkit in practice", content="Mounted at the root")
    assert post["owner"] == {"id": alice.id, "username": alice.username}

    feed = await example.get("/posts", headers=bob.headers)
    assert feed.status_code == 200
    assert [p["id"] for p in feed.json()] == [post["id"]]

    vote = await example.post("/vote", json={"post_id": post["id"], "dir": 1}, headers=bob.headers)
    assert vote.status_code == 201, vote.text
    voted = await example.get(f"/posts/{post['id']}", headers=bob.headers)
    assert voted.json()["votes"] == 1

    refreshed = await example.post("/token/refresh", json={"refresh_token": bob.refresh_token})
    assert refreshed.status_code == 200, refreshed.text


async def test_plugin_refuses_banned_words_and_self_votes(
    example: httpx.AsyncClient,
    new_user: Callable[..., Awaitable[KitUser]],
    create_post: PostFactory,
) -> None:
    alice = await new_user(example)
    banned = await example.post(
        "/posts", json={"title": "Cheap", "content": "Buy SPAM now"}, headers=alice.headers
    )
    assert banned.status_code == 422
    assert banned.json() == {
        "detail": "The content contains the banned word 'spam'.",
        "code": "BANNED_WORD",
    }
    # Whole words only: "spammer" is not "spam".
    await create_post(alice, title="On spammers", content="A spammer was caught")

    post = await create_post(alice)
    self_vote = await example.post(
        "/vote", json={"post_id": post["id"], "dir": 1}, headers=alice.headers
    )
    assert self_vote.status_code == 403
    assert self_vote.json()["code"] == "SELF_VOTE"
    listed = await example.get(f"/posts/{post['id']}", headers=alice.headers)
    assert listed.json()["votes"] == 0

    comments = f"/posts/{post['id']}/comments"
    spam = await example.post(comments, json={"body": "spam!"}, headers=alice.headers)
    assert spam.status_code == 422
    assert spam.json()["code"] == "BANNED_WORD"
    said = await example.post(comments, json={"body": "hello"}, headers=alice.headers)
    assert said.status_code == 201, said.text
    own_vote = await example.put(f"/comments/{said.json()['id']}/vote", headers=alice.headers)
    assert own_vote.status_code == 403
    assert own_vote.json()["code"] == "SELF_VOTE"
    thread = await example.get(comments, headers=alice.headers)
    assert [c["body"] for c in thread.json()] == ["hello"]


async def test_bookmarks(
    example: httpx.AsyncClient,
    empty_database_url: str,
    new_user: Callable[..., Awaitable[KitUser]],
    create_post: PostFactory,
) -> None:
    alice = await new_user(example)
    bob = await new_user(example)
    first = await create_post(alice, title="First")
    second = await create_post(alice, title="Second")
    draft = await create_post(alice, title="Draft", published=False)

    anonymous = await example.put(f"/bookmarks/{first['id']}")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "NOT_AUTHENTICATED"

    added = await example.put(f"/bookmarks/{first['id']}", headers=bob.headers)
    assert added.status_code == 201, added.text
    assert added.json()["post_id"] == first["id"]
    again = await example.put(f"/bookmarks/{first['id']}", headers=bob.headers)
    assert again.status_code == 200
    assert again.json() == added.json()
    await example.put(f"/bookmarks/{second['id']}", headers=bob.headers)

    listed = await example.get("/bookmarks", headers=bob.headers)
    assert [b["post_id"] for b in listed.json()] == [second["id"], first["id"]]
    assert (await example.get("/bookmarks", headers=alice.headers)).json() == []
    one = await example.get(f"/bookmarks/{first['id']}", headers=bob.headers)
    assert one.status_code == 200

    # Someone else's draft and unknown posts are not found; the owner may keep her draft.
    for post_id in (draft["id"], 999_999):
        missing = await example.put(f"/bookmarks/{post_id}", headers=bob.headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == "POST_NOT_FOUND"
    own_draft = await example.put(f"/bookmarks/{draft['id']}", headers=alice.headers)
    assert own_draft.status_code == 201
    # Ids no post can have are 404 like postkit's own id routes, never a 500 from the database.
    for impossible in ("0", "-1", str(2**31), str(2**63)):
        missing = await example.put(f"/bookmarks/{impossible}", headers=bob.headers)
        assert (missing.status_code, missing.json()["code"]) == (404, "POST_NOT_FOUND")
        for method in ("GET", "DELETE"):
            missing = await example.request(method, f"/bookmarks/{impossible}", headers=bob.headers)
            assert (missing.status_code, missing.json()["code"]) == (404, "BOOKMARK_NOT_FOUND")
    invalid = await example.put("/bookmarks/abc", headers=bob.headers)
    assert invalid.status_code == 422
    assert invalid.json()["code"] == "VALIDATION_ERROR"

    removed = await example.delete(f"/bookmarks/{first['id']}", headers=bob.headers)
    assert removed.status_code == 204
    gone = await example.delete(f"/bookmarks/{first['id']}", headers=bob.headers)
    assert gone.status_code == 404
    assert gone.json()["code"] == "BOOKMARK_NOT_FOUND"

    # Deleting the post deletes its bookmarks (the foreign key cascades).
    deleted = await example.delete(f"/posts/{second['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    assert (await example.get("/bookmarks", headers=bob.headers)).json() == []

    # Deleting the user deletes their bookmarks too (the other foreign key).
    assert (await example.put(f"/bookmarks/{first['id']}", headers=bob.headers)).status_code == 201
    count = f"SELECT count(*) FROM socialapp_bookmarks WHERE user_id = {bob.id}"
    assert await asyncio.to_thread(run_sql, empty_database_url, count) == [(1,)]
    delete = f"DELETE FROM postkit_users WHERE id = {bob.id}"
    await asyncio.to_thread(run_sql, empty_database_url, delete)
    assert await asyncio.to_thread(run_sql, empty_database_url, count) == [(0,)]


def test_migrations_compose_postkit_and_the_app(
    socialapp: ModuleType, empty_database_url: str
) -> None:
    migrate = socialapp.migrate
    migrate.migrate(empty_database_url)
    assert {"postkit_users", "postkit_posts", "socialapp_bookmarks"} <= table_names(
        empty_database_url
    )
    # One version table for the composed history: the app's head (which depends on
    # postkit_0001) and postkit's own head.
    assert versions(empty_database_url) == {"socialapp_0001", POSTKIT_HEAD}

    async def check() -> None:
        from postkit.migrations import run_alembic

        await run_alembic(empty_database_url, command.check, config=migrate.alembic_config())

    # The models and the migrations agree (autogenerate finds nothing to do).
    asyncio.run(check())

    # The app's branch goes down on its own; postkit's tables stay.
    asyncio.run(migrate.downgrade_async(empty_database_url, "socialapp@base"))
    tables = table_names(empty_database_url)
    assert "socialapp_bookmarks" not in tables
    assert "postkit_users" in tables
    assert versions(empty_database_url) == {POSTKIT_HEAD}
    migrate.migrate(empty_database_url)
    assert "socialapp_bookmarks" in table_names(empty_database_url)


def test_the_app_adopts_a_database_postkit_migrated_on_its_own(
    socialapp: ModuleType, empty_database_url: str
) -> None:
    """An integrator who ran `postkit db upgrade` before adding the app's own tables."""
    from postkit.migrations import VERSION_TABLE, upgrade

    upgrade(empty_database_url)
    socialapp.migrate.migrate(empty_database_url)
    tables = table_names(empty_database_url)
    assert {"postkit_users", "socialapp_bookmarks"} <= tables
    assert VERSION_TABLE not in tables
    assert versions(empty_database_url) == {"socialapp_0001", POSTKIT_HEAD}


def versions(url: str) -> set[str]:
    return {row[0] for row in run_sql(url, "SELECT version_num FROM alembic_version")}


async def test_health_answers_503_when_the_database_is_down(
    socialapp: ModuleType, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    settings = app_settings(
        socialapp,
        database_url=f"postgresql://nobody@127.0.0.1:{port}/nothing",
        migrate_on_startup=False,
    )
    application = socialapp.main.create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unavailable"}


async def test_docs_are_served_without_a_cdn(example: httpx.AsyncClient) -> None:
    page = await example.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert sources, page.text
    assert all(source.startswith("/static/swagger-ui/") for source in sources), sources
    for source in sources:
        asset = await example.get(source)
        assert asset.status_code == 200, source
    script = await example.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in script.text
    redirect = await example.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200

    schema = (await example.get("/openapi.json")).json()
    for path in ("/users", "/login", "/posts", "/vote", "/bookmarks/{post_id}", "/health"):
        assert path in schema["paths"], path


def test_settings_map_conventional_names_onto_postkit(
    socialapp: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "SECRET_KEY", "PORT", "ENVIRONMENT", "BCRYPT_ROUNDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "DATABASE_URL=postgres://app:pw@db.internal:5432/social\n"
        f"SECRET_KEY={TEST_SECRET}\n"
        "PORT=9123\n"
        "BCRYPT_ROUNDS=5\n"
        "PUBLIC_READS=true\n"
        "BANNED_WORDS= Foo, bar ,,\n"
    )
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    settings = socialapp.settings.AppSettings()
    assert settings.port == 9123
    assert settings.web_concurrency == 3
    assert settings.banned_word_list == ["foo", "bar"]
    kit_settings = settings.postkit_settings()
    assert kit_settings.database_url == "postgresql+asyncpg://app:pw@db.internal:5432/social"
    assert kit_settings.signing_key == TEST_SECRET
    assert kit_settings.environment == "production"
    assert kit_settings.bcrypt_rounds == 5
    assert kit_settings.public_reads is True
    assert kit_settings.auto_migrate is False

    # Production without a secret refuses to start.
    (tmp_path / ".env").write_text("")
    with pytest.raises(ValidationError, match="secret_key is required"):
        socialapp.settings.AppSettings().postkit_settings()


def test_env_example_documents_every_setting(socialapp: ModuleType) -> None:
    text = (EXAMPLE_DIR / ".env.example").read_text()
    lines = text.splitlines()
    for name in socialapp.settings.AppSettings.model_fields:
        variable = name.upper()
        index = next(
            (i for i, line in enumerate(lines) if re.match(rf"#?\s*{variable}=", line)), None
        )
        assert index is not None, f"{variable} is missing from .env.example"
        assert lines[index - 1].startswith("#"), f"{variable} has no comment above it"


def test_requirements_are_installed_here() -> None:
    checked = 0
    for raw in (EXAMPLE_DIR / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "../..":  # postkit from this checkout
            assert (EXAMPLE_DIR / line / "pyproject.toml").is_file()
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:  # pragma: no cover - the assertion explains
            raise AssertionError(f"requirements.txt: {line!r}: {exc}") from exc
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (line, installed)
        checked += 1
    assert checked >= 4


@pytest.mark.slow
def test_serves_with_no_configuration(tmp_path: Path) -> None:
    """`uvicorn app.main:app` with nothing configured: SQLite in the working directory."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--app-dir", str(EXAMPLE_DIR)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    env = clean_env(BCRYPT_ROUNDS="4")
    with live_process(argv, cwd=tmp_path, env=env, log=tmp_path / "uvicorn.log") as server:
        base = f"http://127.0.0.1:{port}"
        assert server.wait_http(f"{base}/health").json() == {"status": "ok", "database": "ok"}
        database = (tmp_path / "socialapp.db").resolve()
        assert database.is_file()
        assert f"SQLite database at {database}" in server.log
        registered = httpx.post(
            f"{base}/users", json={"email": "first@example.com", "password": "a long password"}
        )
        assert registered.status_code == 201, registered.text
        login = httpx.post(
            f"{base}/login", data={"username": "first@example.com", "password": "a long password"}
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        me = httpx.get(f"{base}/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["email"] == "first@example.com"


def test_alembic_command_line_uses_the_composed_history(empty_database_url: str) -> None:
    """`alembic upgrade heads` from the example's folder, as its alembic.ini documents."""

    def alembic(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=EXAMPLE_DIR,
            env=clean_env(DATABASE_URL=empty_database_url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    alembic("upgrade", "heads")
    assert "socialapp_bookmarks" in table_names(empty_database_url)
    assert "No new upgrade operations detected" in alembic("check")
    heads = alembic("heads")
    assert "socialapp_0001 (socialapp) (head)" in heads
    assert f"{POSTKIT_HEAD} (postkit) (head)" in heads
