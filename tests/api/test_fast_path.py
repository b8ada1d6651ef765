"""The read fast path (``postkit.driver``): what reaches the database, and that nothing else
changes: plugin filters, drafts, token checks, and answers byte for byte, on both databases.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.util import await_only

from postkit import Comment, Post, User, hookimpl
from postkit.routers.common import json_response
from tests.support.api import KitClient, TestUser, make_comment, make_post, register


def record_driver_statements(client: KitClient) -> list[str]:
    """Every statement the database receives on connections opened from now on, as the driver
    sends it (asyncpg's query logger, SQLite's trace callback): BEGIN and COMMIT included."""
    engine = client.kit.db.engine
    sent: list[str] = []

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        driver = dbapi_connection.driver_connection
        if engine.dialect.name == "sqlite":
            await_only(driver.set_trace_callback(sent.append))
        else:
            driver.add_query_logger(lambda logged: sent.append(logged.query))

    event.listen(engine.sync_engine, "connect", on_connect)
    return sent


async def fresh_connections(client: KitClient) -> None:
    # Connections opened before the recorder was attached would not report.
    await client.kit.db.engine.dispose()


def reads(sent: list[str]) -> list[str]:
    return [s for s in sent if "postkit_posts" in s or "postkit_auth_sessions" in s]


def transaction_statements(sent: list[str]) -> list[str]:
    words = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT")
    return [s for s in sent if s.strip().upper().startswith(words)]


async def test_a_read_is_one_statement_with_no_transaction(make_client) -> None:
    # Rate limits off: a search's rate-limit count is a write of its own.
    client = await make_client(rate_limits_enabled=False)
    author = await register(client.http)
    post = await make_post(client, author)
    sent = record_driver_statements(client)
    await fresh_connections(client)
    for path in (f"/posts/{post['id']}", "/posts?limit=5", "/posts?limit=5&search=title"):
        sent.clear()
        response = await client.get(path, headers=author.headers)
        assert response.status_code == 200, response.text
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon after, not at once
        # The token's session check and the read: one statement, no BEGIN / COMMIT around it.
        assert len(reads(sent)) == 1, sent
        assert "postkit_auth_sessions" in reads(sent)[0]
        assert transaction_statements(sent) == [], sent


class HideBlocked:
    """Hides, from each reader, the authors they blocked and the words they muted: filters
    whose values depend on the reader (an IN list, and a LIKE pattern of one bound value)."""

    def __init__(self) -> None:
        self.blocked: dict[int, list[int]] = {}
        self.muted: dict[int, str] = {}

    @hookimpl
    def post_query_filters(self, user: User | None) -> list[Any]:
        if user is None:
            return []
        filters = []
        if user.id in self.blocked:
            filters.append(Post.owner_id.notin_(self.blocked[user.id]))
        if user.id in self.muted:
            filters.append(Post.title.not_ilike(f"%{self.muted[user.id]}%"))
        return filters


async def titles(client: KitClient, reader: TestUser) -> list[str]:
    response = await client.get("/posts?limit=50", headers=reader.headers)
    assert response.status_code == 200, response.text
    return sorted(p["title"] for p in response.json())


async def test_plugin_filters_apply_per_reader_on_the_fast_path(make_client) -> None:
    rules = HideBlocked()
    client = await make_client(plugins=[rules])
    ann, bob, cid, dee = [await register(client.http) for _ in range(4)]
    await make_post(client, ann, title="ann cats")
    await make_post(client, ann, title="ann dogs")
    await make_post(client, bob, title="bob cats")
    hidden = await make_post(client, bob, title="bob dogs")
    await make_post(client, cid, title="cid draft", published=False)
    rules.blocked = {cid.id: [ann.id], dee.id: [ann.id, bob.id]}
    rules.muted = {bob.id: "dogs", cid.id: "cats"}

    # The same query shapes, with each reader's own values: none sees another's filters.
    assert await titles(client, ann) == ["ann cats", "ann dogs", "bob cats", "bob dogs"]
    assert await titles(client, bob) == ["ann cats", "bob cats"]
    assert await titles(client, cid) == ["bob dogs", "cid draft"]
    assert await titles(client, dee) == []
    # Asked again (the shapes are cached now), the answers are the same.
    assert await titles(client, bob) == ["ann cats", "bob cats"]
    assert await titles(client, cid) == ["bob dogs", "cid draft"]
    # One post, too: hidden from the readers whose filters exclude it, and only from them.
    for reader, status in ((ann, 200), (bob, 404), (cid, 200), (dee, 404)):
        response = await client.get(f"/posts/{hidden['id']}", headers=reader.headers)
        assert response.status_code == status, (reader.username, response.text)


async def test_a_filtering_plugin_sees_the_checked_reader(make_client) -> None:
    seen: list[tuple[int, bool]] = []

    class Watch:
        @hookimpl
        def post_query_filters(self, user: User | None) -> list[Any]:
            assert user is not None
            seen.append((user.id, user.is_active))
            return []

    client = await make_client(plugins=[Watch()])
    reader = await register(client.http)
    assert (await client.get("/posts", headers=reader.headers)).status_code == 200
    assert seen == [(reader.id, True)]
    # A revoked token never reaches the plugin: the check comes first.
    assert (await client.post("/logout", headers=reader.headers)).status_code == 204
    assert (await client.get("/posts", headers=reader.headers)).status_code == 401
    assert seen == [(reader.id, True)]


async def host_answer(client: KitClient, user_id: int, read: Callable[..., Any]) -> bytes:
    """What the same read answers through the ORM session path (a host's code)."""
    async with client.kit.db.sessionmaker() as session:
        user = await session.get(User, user_id)
        return bytes(json_response(await read(session, user)).body)


async def test_answers_are_byte_identical_to_the_session_path(client: KitClient) -> None:
    author = await register(client.http)
    reader = await register(client.http)
    posts = [await make_post(client, author, title=f"post {n}") for n in range(4)]
    await make_post(client, author, title="draft", published=False)
    await client.put(f"/posts/{posts[1]['id']}/vote", headers=reader.headers)
    kit = client.kit

    for user in (author, reader):
        page = await client.get("/posts?limit=3", headers=user.headers)
        expected = await host_answer(
            client, user.id, lambda s, u: _posts(kit.posts.feed(s, user=u, limit=3))
        )
        assert page.content == expected
        cursor = page.headers["X-Next-Cursor"]
        page2 = await client.get(f"/posts?limit=3&cursor={cursor}", headers=user.headers)
        expected2 = await host_answer(
            client,
            user.id,
            lambda s, u: _posts(kit.posts.feed(s, user=u, limit=3, cursor=cursor)),  # noqa: B023
        )
        assert page2.content == expected2
        top = await client.get("/posts?sort=top&limit=2", headers=user.headers)
        expected_top = await host_answer(
            client, user.id, lambda s, u: _posts(kit.posts.feed(s, user=u, limit=2, sort="top"))
        )
        assert top.content == expected_top
        one = await client.get(f"/posts/{posts[1]['id']}", headers=user.headers)
        expected_one = await host_answer(
            client, user.id, lambda s, u: kit.posts.get(s, post_id=posts[1]["id"], user=u)
        )
        assert one.content == expected_one
        assert json.loads(one.content)["votes"] == 1


async def _posts(page: Any) -> list[dict[str, Any]]:
    return list((await page).posts)


async def test_a_watched_engine_sees_every_read_and_answers_alike(client: KitClient) -> None:
    author = await register(client.http)
    post = await make_post(client, author)
    fast = await client.get(f"/posts/{post['id']}", headers=author.headers)
    seen: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = client.kit.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", watch)
    try:
        watched = await client.get(f"/posts/{post['id']}", headers=author.headers)
    finally:
        event.remove(engine, "before_cursor_execute", watch)
    assert watched.content == fast.content
    assert any("postkit_posts" in s for s in seen)
    assert any("postkit_auth_sessions" in s for s in seen)


@pytest.mark.parametrize(
    ("path", "status"), [("/posts/1", 404), ("/posts?cursor=forged", 400), ("/posts/0", 404)]
)
async def test_a_revoked_token_is_refused_before_anything_else(
    client: KitClient, path: str, status: int
) -> None:
    reader = await register(client.http)
    assert (await client.get(path, headers=reader.headers)).status_code == status
    assert (await client.post("/logout", headers=reader.headers)).status_code == 204
    refused = await client.get(path, headers=reader.headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "INVALID_TOKEN"


async def test_a_remembered_token_still_expires(make_client) -> None:
    client = await make_client(access_token_ttl="PT2S", jwt_leeway_seconds=0)
    reader = await register(client.http)
    assert (await client.get("/posts", headers=reader.headers)).status_code == 200
    assert (await client.get("/posts", headers=reader.headers)).status_code == 200
    await asyncio.sleep(2.2)
    expired = await client.get("/posts", headers=reader.headers)
    assert expired.status_code == 401
    assert expired.json()["code"] == "INVALID_TOKEN"


async def test_concurrent_reads_share_the_pool_without_leaking(make_client) -> None:
    client = await make_client(database_pool_size=2, database_max_overflow=0)
    reader = await register(client.http)
    post = await make_post(client, reader)
    paths = [f"/posts/{post['id']}", "/posts", "/posts/999999", "/posts?cursor=bad"] * 15
    answers = await asyncio.gather(*(client.get(p, headers=reader.headers) for p in paths))
    assert sorted({a.status_code for a in answers}) == [200, 400, 404]
    pool = client.kit.db.engine.sync_engine.pool
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_comment_reads_check_the_session_in_their_first_statement(make_client) -> None:
    client = await make_client(rate_limits_enabled=False)
    author = await register(client.http)
    post = await make_post(client, author)
    top = await make_comment(client, author, post["id"], "top")
    reply = await make_comment(client, author, post["id"], "reply", parent_id=top["id"])
    sent = record_driver_statements(client)
    await fresh_connections(client)
    tables = ("postkit_posts", "postkit_comments", "postkit_auth_sessions")
    # (path, statements): the post's visibility, the page, one per nested level that has
    # replies; the parent's visibility before a reply page; the comment alone.
    for path, count in (
        (f"/posts/{post['id']}/comments", 3),
        (f"/posts/{post['id']}/comments?parent_id={top['id']}", 3),
        (f"/comments/{reply['id']}", 1),
    ):
        sent.clear()
        response = await client.get(path, headers=author.headers)
        assert response.status_code == 200, response.text
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon after, not at once
        statements = [s for s in sent if any(table in s for table in tables)]
        assert len(statements) == count, (path, statements)
        # Only the first carries the token's session check; no BEGIN / COMMIT around any.
        assert "postkit_auth_sessions" in statements[0], (path, statements)
        assert not any("postkit_auth_sessions" in s for s in statements[1:]), (path, statements)
        assert transaction_statements(sent) == [], (path, sent)


async def comment_bodies(client: KitClient, reader: TestUser, post_id: int) -> list[str]:
    response = await client.get(f"/posts/{post_id}/comments?depth=0", headers=reader.headers)
    assert response.status_code == 200, response.text
    return sorted(c["body"] for c in response.json())


async def test_comment_filters_apply_per_reader_on_the_fast_path(make_client) -> None:
    seen: list[int] = []

    class MuteWords:
        """Hides from each reader the comments with the word they muted."""

        def __init__(self) -> None:
            self.muted: dict[int, str] = {}

        @hookimpl
        def comment_query_filters(self, user: User | None) -> list[Any]:
            assert user is not None
            assert user.is_active
            seen.append(user.id)
            word = self.muted.get(user.id)
            return [] if word is None else [Comment.body.not_ilike(f"%{word}%")]

    rules = MuteWords()
    client = await make_client(plugins=[rules])
    ann, bob = await register(client.http), await register(client.http)
    post = await make_post(client, ann)
    cats = await make_comment(client, ann, post["id"], "cats")
    await make_comment(client, bob, post["id"], "dogs")
    rules.muted = {ann.id: "dogs", bob.id: "cats"}

    assert await comment_bodies(client, ann, post["id"]) == ["cats"]
    assert await comment_bodies(client, bob, post["id"]) == ["dogs"]
    assert await comment_bodies(client, ann, post["id"]) == ["cats"]  # the shape is cached
    for reader, status in ((ann, 200), (bob, 404)):
        response = await client.get(f"/comments/{cats['id']}", headers=reader.headers)
        assert response.status_code == status, (reader.username, response.text)
    # A revoked token never reaches the plugin: the check comes first.
    calls = len(seen)
    assert (await client.post("/logout", headers=bob.headers)).status_code == 204
    for path in (f"/posts/{post['id']}/comments", f"/comments/{cats['id']}"):
        assert (await client.get(path, headers=bob.headers)).status_code == 401
    assert len(seen) == calls


async def test_comment_answers_are_byte_identical_to_the_session_path(
    client: KitClient,
) -> None:
    author = await register(client.http)
    reader = await register(client.http)
    post = await make_post(client, author)
    draft = await make_post(client, author, published=False)
    tops = [await make_comment(client, author, post["id"], f"top {n}") for n in range(3)]
    first = await make_comment(client, reader, post["id"], "reply", parent_id=tops[0]["id"])
    await make_comment(client, author, post["id"], "deeper", parent_id=first["id"])
    await make_comment(client, author, draft["id"], "on a draft")
    await client.put(f"/comments/{tops[1]['id']}/vote", headers=reader.headers)
    kit = client.kit

    async def page(user: TestUser, **query: Any) -> tuple[Any, bytes]:
        path = f"/posts/{query.get('post_id', post['id'])}/comments"
        params = {k: v for k, v in query.items() if k != "post_id"}
        response = await client.get(path, params=params, headers=user.headers)
        arguments = {"post_id": post["id"], **query}
        expected = await host_answer(
            client,
            user.id,
            lambda s, u: _comments(kit.comments.page(s, user=u, **arguments)),
        )
        assert response.content == expected, (user.username, query)
        return response, expected

    for user in (author, reader):
        for sort in ("best", "top", "new"):
            response, _ = await page(user, sort=sort, limit=2)
            await page(user, sort=sort, limit=2, cursor=response.headers["X-Next-Cursor"])
        await page(user, parent_id=tops[0]["id"])
        await page(user, depth=1, replies=1)
        one = await client.get(f"/comments/{first['id']}", headers=user.headers)
        expected = await host_answer(
            client, user.id, lambda s, u: kit.comments.get(s, comment_id=first["id"], user=u)
        )
        assert one.content == expected
    # The draft's comments: its author sees them, alike on both paths; others get 404.
    response, _ = await page(author, post_id=draft["id"])
    assert [c["body"] for c in response.json()] == ["on a draft"]
    refused = await client.get(f"/posts/{draft['id']}/comments", headers=reader.headers)
    assert refused.status_code == 404


async def _comments(page: Any) -> list[dict[str, Any]]:
    return list((await page).comments)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/posts/{post}/comments", 200),
        ("/posts/999999/comments", 404),
        ("/posts/0/comments", 404),
        ("/posts/{post}/comments?cursor=forged", 400),
        ("/posts/{post}/comments?parent_id=999999", 404),
        ("/comments/{comment}", 200),
        ("/comments/999999", 404),
        ("/comments/0", 404),
    ],
)
async def test_a_revoked_token_is_refused_on_comment_reads(
    client: KitClient, path: str, status: int
) -> None:
    reader = await register(client.http)
    post = await make_post(client, reader)
    comment = await make_comment(client, reader, post["id"])
    path = path.format(post=post["id"], comment=comment["id"])
    assert (await client.get(path, headers=reader.headers)).status_code == status
    assert (await client.post("/logout", headers=reader.headers)).status_code == 204
    refused = await client.get(path, headers=reader.headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "INVALID_TOKEN"
