"""The reference app's OpenAPI document tells the truth: a 405 lists every method of its path,
operations are named like their routes, documented statuses are the ones answered, and a PUT of a
bookmark is safe to race. Through HTTP against the app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.support.api import TEST_PASSWORD, TEST_SECRET
from tests.support.paths import EXAMPLE_DIR

HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@pytest.fixture(scope="module")
def socialapp() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        yield importlib.import_module("app.main")
    finally:
        sys.path.remove(str(EXAMPLE_DIR))


@pytest.fixture
async def app(socialapp: ModuleType, empty_database_url: str) -> AsyncIterator[Any]:
    settings = importlib.import_module("app.settings").AppSettings(
        _env_file=None,
        secret_key=TEST_SECRET,
        bcrypt_rounds=4,
        database_url=empty_database_url,
        database_pool_size=25,
    )
    application = socialapp.create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _login(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    email = f"{name}@example.com"
    created = await http.post(
        "/users", json={"email": email, "password": TEST_PASSWORD, "username": name}
    )
    assert created.status_code == 201, created.text
    tokens = await http.post("/login", data={"username": email, "password": TEST_PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


async def test_a_405_lists_every_method_of_its_path(app: Any, http: httpx.AsyncClient) -> None:
    headers = await _login(http, "allow_check")
    post = await http.post("/posts", json={"title": "T", "content": "C"}, headers=headers)
    post_id = post.json()["id"]
    document = app.openapi()
    concrete = {
        "/posts": "/posts",
        "/posts/{post_id}": f"/posts/{post_id}",
        "/posts/{post_id}/vote": f"/posts/{post_id}/vote",
        "/users/me": "/users/me",
        "/bookmarks/{post_id}": f"/bookmarks/{post_id}",
    }
    for template, url in concrete.items():
        documented = {method.upper() for method in document["paths"][template]}
        for method in HTTP_METHODS:
            if method in documented:
                continue
            for spelling in (url, f"{url}/"):
                response = await http.request(method, spelling, headers=headers)
                assert response.status_code == 405, (method, spelling, response.text)
                allowed = {m.strip() for m in response.headers["allow"].split(",")}
                assert allowed == documented, (method, spelling, allowed)


async def test_operations_are_named_like_their_routes(app: Any) -> None:
    operations = {
        (path, method): operation
        for path, methods in app.openapi()["paths"].items()
        for method, operation in methods.items()
    }
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids))
    assert operations["/login", "post"]["operationId"] == "login"
    assert operations["/login", "post"]["summary"] == "Login"
    assert operations["/posts", "get"]["operationId"] == "list_posts"
    assert operations["/posts", "get"]["summary"] == "List posts"
    assert operations["/posts/{post_id}", "get"]["operationId"] == "get_post"
    assert operations["/bookmarks/{post_id}", "put"]["operationId"] == "put_bookmark"
    assert set(ids) == {
        "login", "refresh", "logout", "logout_all", "register", "me", "update_me", "get_user",
        "delete_me", "export_me", "list_sessions", "end_session",
        "list_posts", "create_post", "get_post", "replace_post", "update_post", "delete_post",
        "list_post_revisions", "vote", "put_vote", "delete_vote",
        "list_comments", "create_comment", "get_comment", "update_comment", "delete_comment",
        "list_comment_revisions", "put_comment_vote", "delete_comment_vote",
        "list_bookmarks", "get_bookmark", "put_bookmark", "delete_bookmark", "health",
    }  # fmt: skip
    summaries = [operation["summary"] for operation in operations.values()]
    assert not [summary for summary in summaries if "Postkit" in summary or ":" in summary]
    # The route names stay what url_path_for and the password flow need.
    assert app.url_path_for("postkit:login") == "/login"
    flows = app.openapi()["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == "/login"


async def test_dir_is_documented_as_it_is_validated(app: Any, http: httpx.AsyncClient) -> None:
    schema = app.openapi()["components"]["schemas"]["VoteIn"]["properties"]["dir"]
    assert schema["type"] == "integer"
    assert sorted(schema["enum"]) == [-1, 0, 1]
    author = await _login(http, "dir_author")
    voter = await _login(http, "dir_voter")
    post = (await http.post("/posts", json={"title": "T", "content": "C"}, headers=author)).json()
    for refused in (0.0, 1.0, -1.0, True, "1", 2, -2):
        response = await http.post(
            "/vote", json={"post_id": post["id"], "dir": refused}, headers=voter
        )
        assert response.status_code == 422, refused
    voted = await http.post("/vote", json={"post_id": post["id"], "dir": 1}, headers=voter)
    assert voted.status_code == 201


async def test_bookmark_put_documents_both_answers(app: Any, http: httpx.AsyncClient) -> None:
    responses = app.openapi()["paths"]["/bookmarks/{post_id}"]["put"]["responses"]
    assert {"200", "201"} <= set(responses)
    for status in ("200", "201"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/BookmarkOut"}
    headers = await _login(http, "bookmarker")
    post = (await http.post("/posts", json={"title": "T", "content": "C"}, headers=headers)).json()
    first = await http.put(f"/bookmarks/{post['id']}", headers=headers)
    again = await http.put(f"/bookmarks/{post['id']}", headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()


async def test_concurrent_identical_bookmark_puts_create_one(
    app: Any, http: httpx.AsyncClient
) -> None:
    headers = await _login(http, "racer")
    for round_ in range(3):
        created = await http.post(
            "/posts", json={"title": f"race {round_}", "content": "C"}, headers=headers
        )
        url = f"/bookmarks/{created.json()['id']}"
        answers = await asyncio.gather(*(http.put(url, headers=headers) for _ in range(20)))
        statuses = Counter(answer.status_code for answer in answers)
        assert statuses == {201: 1, 200: 19}, [answer.text for answer in answers]
        assert len({answer.json()["created_at"] for answer in answers}) == 1
    listed = await http.get("/bookmarks", headers=headers)
    assert len(listed.json()) == 3


async def test_a_bookmark_of_a_missing_post_is_404(http: httpx.AsyncClient) -> None:
    headers = await _login(http, "nobody_home")
    response = await http.put("/bookmarks/999999", headers=headers)
    assert response.status_code == 404
    assert response.json()["code"] == "POST_NOT_FOUND"
