"""A client generated from the reference app's OpenAPI document works against the live app.

The reference app runs as a real uvicorn server on a fresh database (SQLite and PostgreSQL); its
``/openapi.json`` is fetched over HTTP and handed to openapi-python-client, a maintained generator
of typed Python clients. The generated package is imported and used the way an adopter would:
register, log in with the password form, create posts, page the feed by cursor, vote and unvote,
refresh the tokens, each answer parsed into the generated models. A generator warning, a module
name other than the operation ids, or an answer the generated models cannot parse fails the test.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.support.api import TEST_PASSWORD, TEST_SECRET
from tests.support.databases import empty_database
from tests.support.paths import EXAMPLE_DIR
from tests.support.ports import free_port
from tests.support.servers import LiveProcess, serve, server_env

pytestmark = pytest.mark.slow  # a real server process and a code generator

PACKAGE = "socialapp_client"
POSTS = 5
PAGE = 2
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _reference_app_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(EXAMPLE_DIR),
        "app.main:create_app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning",
    ]  # fmt: skip


@pytest.fixture
def reference_app(backend: str, tmp_path: Path) -> Iterator[LiveProcess]:
    """The reference app on a free loopback port, migrating a brand-new database at start-up."""
    with empty_database(backend, tmp_path) as url:
        port = free_port()
        env = server_env(url, database_pool_size=3)
        env.update(DATABASE_URL=url, SECRET_KEY=TEST_SECRET, BCRYPT_ROUNDS="4")
        with serve(_reference_app_command(port), env=env, log_dir=tmp_path, port=port) as server:
            yield server
            assert "Traceback" not in server.log, server.log[-6000:]


@pytest.fixture
def generated(reference_app: LiveProcess, tmp_path: Path) -> Iterator[ModuleType]:
    """The client generated from the live server's document, imported as ``socialapp_client``."""
    answer = httpx.get(f"{reference_app.url}/openapi.json", timeout=30)
    assert answer.status_code == 200, answer.text
    out = tmp_path / "generated"
    out.mkdir()
    (out / "openapi.json").write_text(json.dumps(answer.json()))
    # No post-generation hooks: the test needs no formatter on PATH, only the generated code.
    (out / "config.yaml").write_text("post_hooks: []\n")
    command = [
        sys.executable, "-m", "openapi_python_client", "generate",
        "--path", "openapi.json", "--output-path", PACKAGE, "--meta", "none",
        "--config", "config.yaml", "--fail-on-warning",
    ]  # fmt: skip
    generator = subprocess.run(command, cwd=out, capture_output=True, text=True, timeout=300)
    assert generator.returncode == 0, generator.stdout + generator.stderr
    assert "Warning" not in generator.stdout + generator.stderr, generator.stdout
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _as_written(value: Any) -> Any:
    """A JSON value as the generated models write it back: datetimes in UTC end ``+00:00``
    (Python's ``isoformat``) where the server writes ``Z``."""
    if isinstance(value, dict):
        return {key: _as_written(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_written(item) for item in value]
    if isinstance(value, str) and TIMESTAMP.fullmatch(value):
        return value.removesuffix("Z") + "+00:00"
    return value


def _typed(answer: Any, model: type, status: int) -> Any:
    """The parsed body of ``answer``, which has ``status`` and is a ``model`` that holds the
    whole body: no field the document leaves out, and it writes back what the server sent."""
    assert answer.status_code == status, answer.content
    parsed = answer.parsed
    assert isinstance(parsed, model), (model, answer.content)
    assert parsed.additional_properties == {}, parsed.additional_properties
    assert parsed.to_dict() == _as_written(json.loads(answer.content)), answer.content
    return parsed


def test_a_generated_client_drives_the_live_app(
    reference_app: LiveProcess, generated: ModuleType
) -> None:
    models = _module("models")
    register = _module("api.users.register")
    login = _module("api.auth.login")
    refresh = _module("api.auth.refresh")
    me = _module("api.users.me")
    create_post = _module("api.posts.create_post")
    get_post = _module("api.posts.get_post")
    delete_post = _module("api.posts.delete_post")
    get_bookmark = _module("api.bookmarks.get_bookmark")
    list_posts = _module("api.posts.list_posts")
    put_vote = _module("api.votes.put_vote")
    delete_vote = _module("api.votes.delete_vote")
    vote = _module("api.votes.vote")
    # An answer whose status the document does not list raises instead of parsing to None.
    options: dict[str, Any] = {
        "base_url": reference_app.url,
        "timeout": httpx.Timeout(30.0),
        "raise_on_unexpected_status": True,
    }
    anonymous = generated.Client(**options)
    # Every 422 is documented as postkit's body, none as FastAPI's default one.
    assert not hasattr(models, "HTTPValidationError")

    # Register two users; a second registration of an email is a typed 409.
    accounts = {}
    for name in ("gen_alice", "gen_bob"):
        body = models.UserCreate(email=f"{name}@example.com", password=TEST_PASSWORD, username=name)
        user = _typed(register.sync_detailed(client=anonymous, body=body), models.UserPrivate, 201)
        assert (user.username, user.email) == (name, f"{name}@example.com")
        accounts[name] = user
    again = register.sync_detailed(
        client=anonymous,
        body=models.UserCreate(email="gen_alice@example.com", password=TEST_PASSWORD),
    )
    assert _typed(again, models.ErrorBody, 409).code

    # Log in with the password form; a wrong password is a typed 401.
    def tokens_for(name: str) -> Any:
        body = models.BodyLogin(username=f"{name}@example.com", password=TEST_PASSWORD)
        tokens = _typed(login.sync_detailed(client=anonymous, body=body), models.TokenPair, 200)
        assert tokens.token_type == "bearer"
        assert tokens.expires_in > 0
        return tokens

    refused = login.sync_detailed(
        client=anonymous,
        body=models.BodyLogin(username="gen_alice@example.com", password="not the password"),
    )
    assert _typed(refused, models.ErrorBody, 401).detail
    alice_tokens = tokens_for("gen_alice")
    alice = generated.AuthenticatedClient(token=alice_tokens.access_token, **options)
    bob = generated.AuthenticatedClient(token=tokens_for("gen_bob").access_token, **options)
    whoami = _typed(me.sync_detailed(client=alice), models.UserPrivate, 200)
    assert whoami.id == accounts["gen_alice"].id

    # Create posts; an empty title is a typed 422.
    created_ids = []
    for i in range(POSTS):
        body = models.PostCreate(title=f"generated {i}", content=f"body {i}")
        post = _typed(create_post.sync_detailed(client=alice, body=body), models.PostPublic, 201)
        assert (post.title, post.content) == (f"generated {i}", f"body {i}")
        assert (post.owner.username, post.owner_id) == ("gen_alice", accounts["gen_alice"].id)
        assert (post.votes, post.published) == (0, True)
        created_ids.append(post.id)
    invalid = create_post.sync_detailed(client=alice, body=models.PostCreate(title="", content="x"))
    assert _typed(invalid, models.ValidationErrorBody, 422).code == "VALIDATION_ERROR"
    # A path that is not a post id is the same typed 422 on every route that takes one.
    for operation in (get_post, delete_post, put_vote, delete_vote, get_bookmark):
        answer = operation.sync_detailed("not-a-number", client=alice)
        assert _typed(answer, models.ValidationErrorBody, 422).code == "VALIDATION_ERROR"

    # List with a limit, then page by the X-Next-Cursor header (with the async functions).
    def page_ids(page: Any) -> list[int]:
        assert page.status_code == 200, page.content
        assert 0 < len(page.parsed) <= PAGE
        assert all(isinstance(post, models.PostPublic) for post in page.parsed)
        assert [post.to_dict() for post in page.parsed] == _as_written(json.loads(page.content))
        return [post.id for post in page.parsed]

    first = list_posts.sync_detailed(client=bob, limit=PAGE)
    seen = page_ids(first)
    assert len(seen) == PAGE

    async def remaining_pages(cursor: str | None) -> list[int]:
        ids: list[int] = []
        pages = 0
        while cursor is not None:
            page = await list_posts.asyncio_detailed(client=bob, limit=PAGE, cursor=cursor)
            ids += page_ids(page)
            cursor = page.headers.get("x-next-cursor")
            pages += 1
            assert pages <= POSTS, "the cursor never ran out"
        return ids

    seen += asyncio.run(remaining_pages(first.headers.get("x-next-cursor")))
    assert seen == list(reversed(created_ids))  # every post once, newest first

    # Vote and unvote: PUT and DELETE are safe to repeat, POST /vote is the toggle form.
    target = created_ids[0]
    for expected in (201, 200):
        state = _typed(put_vote.sync_detailed(target, client=bob), models.VoteState, expected)
        assert (state.post_id, state.votes, state.dir_) == (target, 1, models.VoteStateDir.VALUE_1)
    assert _typed(get_post.sync_detailed(target, client=alice), models.PostPublic, 200).votes == 1
    for _ in range(2):
        removed = delete_vote.sync_detailed(target, client=bob)
        assert (removed.status_code, removed.content) == (204, b"")
    assert _typed(get_post.sync_detailed(target, client=alice), models.PostPublic, 200).votes == 0
    body = models.VoteIn(post_id=target, dir_=models.VoteInDir.VALUE_1)
    toggled = _typed(vote.sync_detailed(client=bob, body=body), models.VoteState, 201)
    assert (toggled.votes, toggled.dir_) == (1, models.VoteStateDir.VALUE_1)
    missing = _typed(put_vote.sync_detailed(999_999, client=bob), models.ErrorBody, 404)
    assert missing.code == "POST_NOT_FOUND"

    # Refresh: a new pair whose access token works; the spent refresh token does not.
    spend = models.RefreshRequest(refresh_token=alice_tokens.refresh_token)
    renewed = _typed(refresh.sync_detailed(client=anonymous, body=spend), models.TokenPair, 200)
    assert renewed.refresh_token != alice_tokens.refresh_token
    fresh = generated.AuthenticatedClient(token=renewed.access_token, **options)
    assert _typed(me.sync_detailed(client=fresh), models.UserPrivate, 200).username == "gen_alice"
    spent = refresh.sync_detailed(client=anonymous, body=spend)
    assert _typed(spent, models.ErrorBody, 401).code
