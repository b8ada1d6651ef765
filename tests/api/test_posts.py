"""Posts through HTTP on SQLite and PostgreSQL: CRUD, ownership, drafts, validation, limits,
search, paging (offset and keyset), sort=top, and the one-query feed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, text

from postkit.models import Post, User, Vote
from tests.support.api import make_post


async def feed(client: Any, user: Any | None = None, **params: Any) -> httpx.Response:
    headers = user.headers if user is not None else {}
    return await client.get("/posts", params=params, headers=headers)


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [post["id"] for post in response.json()]


# --- Create and read ----------------------------------------------------------------------------


async def test_create_answers_the_full_post_with_owner_from_token(client, new_user):
    user = await new_user(client)
    response = await client.post(
        "/posts", json={"title": "  Hello  ", "content": "World"}, headers=user.headers
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "title",
        "content",
        "published",
        "created_at",
        "updated_at",
        "owner_id",
        "owner",
        "score",
        "upvotes",
        "downvotes",
        "votes",
        "comment_count",
        "edited_at",
        "extra",
    }
    assert body["title"] == "Hello"
    assert body["content"] == "World"
    assert body["published"] is True
    assert body["owner_id"] == user.id
    assert body["owner"] == {"id": user.id, "username": user.username}
    assert body["votes"] == 0
    assert body["comment_count"] == 0
    assert body["votes"] == body["score"] == body["upvotes"] == body["downvotes"] == 0
    assert body["edited_at"] is None
    assert body["extra"] == {}
    assert body["created_at"].endswith("Z")

    fetched = await client.get(f"/posts/{body['id']}", headers=user.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_owner_id_in_the_body_is_refused(client, new_user):
    user = await new_user(client)
    other = await new_user(client)
    response = await client.post(
        "/posts",
        json={"title": "t", "content": "c", "owner_id": other.id},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["detail"][0]["loc"] == ["body", "owner_id"]


async def test_writes_and_default_reads_need_a_token(client, new_user):
    user = await new_user(client)
    post = await make_post(client, user)
    for method, url, body in [
        ("GET", "/posts", None),
        ("GET", f"/posts/{post['id']}", None),
        ("POST", "/posts", {"title": "t", "content": "c"}),
        ("PUT", f"/posts/{post['id']}", {"title": "t", "content": "c"}),
        ("PATCH", f"/posts/{post['id']}", {"title": "t"}),
        ("DELETE", f"/posts/{post['id']}", None),
    ]:
        response = await client.request(method, url, json=body)
        assert response.status_code == 401, (method, url)
        assert response.json()["code"] == "NOT_AUTHENTICATED"
    bad = await client.get("/posts", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "INVALID_TOKEN"


async def test_public_reads_show_published_posts_to_anonymous_clients(make_client, new_user):
    client = await make_client(public_reads=True)
    user = await new_user(client)
    published = await make_post(client, user, title="public")
    draft = await make_post(client, user, title="draft", published=False)
    assert ids(await feed(client)) == [published["id"]]
    assert (await client.get(f"/posts/{published['id']}")).status_code == 200
    assert (await client.get(f"/posts/{draft['id']}")).status_code == 404
    assert ids(await feed(client, user)) == [draft["id"], published["id"]]
    # Writes still need a token, and a token that is sent must be valid.
    assert (await client.post("/posts", json={"title": "t", "content": "c"})).status_code == 401
    bad = await client.get("/posts", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "INVALID_TOKEN"


async def test_drafts_are_visible_only_to_their_owner(client, new_user):
    owner = await new_user(client)
    other = await new_user(client)
    draft = await make_post(client, owner, title="secret", published=False)
    public = await make_post(client, owner, title="public")

    assert ids(await feed(client, owner)) == [public["id"], draft["id"]]
    assert ids(await feed(client, other)) == [public["id"]]
    assert ids(await feed(client, other, search="secret")) == []

    hidden = await client.get(f"/posts/{draft['id']}", headers=other.headers)
    assert hidden.status_code == 404
    assert hidden.json() == {"detail": "Post not found", "code": "POST_NOT_FOUND"}
    assert (await client.get(f"/posts/{draft['id']}", headers=owner.headers)).status_code == 200
    for method in ("PATCH", "DELETE"):
        response = await client.request(
            method, f"/posts/{draft['id']}", json={"title": "x"}, headers=other.headers
        )
        assert response.status_code == 404

    published = await client.patch(
        f"/posts/{draft['id']}", json={"published": True}, headers=owner.headers
    )
    assert published.status_code == 200
    assert (await client.get(f"/posts/{draft['id']}", headers=other.headers)).status_code == 200


async def test_unknown_and_out_of_range_ids_are_404(client, new_user):
    user = await new_user(client)
    for post_id in (999_999, 0, -5, 2**31, 10**30):
        response = await client.get(f"/posts/{post_id}", headers=user.headers)
        assert response.status_code == 404, post_id
        assert response.json()["code"] == "POST_NOT_FOUND"
    assert (await client.get("/posts/abc", headers=user.headers)).status_code == 422


# --- Validation and limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "content": "c"},
        {"title": "   ", "content": "c"},
        {"title": "x" * 301, "content": "c"},
        {"title": "t"},
        {"content": "c"},
        {"title": "t", "content": ""},
        {"title": "t", "content": "c", "published": "maybe"},
        {"title": "t", "content": "c", "published": "yes"},
        {"title": "t", "content": "c", "published": 1},
        {"title": 5, "content": "c"},
        {"title": "nul\u0000", "content": "c"},
        {"title": "t", "content": "nul\u0000"},
        b'{"title": "t", "content": "\\ud800"}',
        ["not", "an", "object"],
    ],
)
async def test_invalid_posts_are_422(client, new_user, body):
    user = await new_user(client)
    if isinstance(body, bytes):
        headers = {**user.headers, "Content-Type": "application/json"}
        response = await client.post("/posts", content=body, headers=headers)
    else:
        response = await client.post("/posts", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert (await feed(client, user)).json() == []


async def test_title_limits_are_inclusive(client, new_user):
    user = await new_user(client)
    assert (await make_post(client, user, title="x"))["title"] == "x"
    assert (await make_post(client, user, title="y" * 300))["title"] == "y" * 300


async def test_content_limit_is_the_setting(make_client, new_user):
    client = await make_client(post_content_max_length=50)
    user = await new_user(client)
    assert (await make_post(client, user, content="c" * 50))["content"] == "c" * 50
    for method, url in [("POST", "/posts"), ("PUT", "/posts/1"), ("PATCH", "/posts/1")]:
        response = await client.request(
            method, url, json={"title": "t", "content": "c" * 51}, headers=user.headers
        )
        assert response.status_code == 422, method
        body = response.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert body["detail"][0]["loc"] == ["body", "content"]
        assert body["detail"][0]["type"] == "string_too_long"


async def test_bodies_over_the_limit_are_413(make_client, new_user):
    client = await make_client(max_body_bytes=2048)
    user = await new_user(client)
    big = {"title": "t", "content": "c" * 5000}
    declared = await client.post("/posts", json=big, headers=user.headers)
    assert declared.status_code == 413
    assert declared.json() == {
        "detail": "The request body is larger than 2048 bytes",
        "code": "BODY_TOO_LARGE",
    }

    async def chunks():
        payload = httpx.Response(200, json=big).content
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    streamed = await client.post(
        "/posts",
        content=chunks(),
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "BODY_TOO_LARGE"
    vote = await client.post("/vote", json={"post_id": 1, "dir": 1, "pad": "x" * 4000})
    assert vote.status_code == 413
    assert (await feed(client, user)).json() == []
    # A body under the limit still works, streamed or not.
    small = await client.post("/posts", json={"title": "t", "content": "c"}, headers=user.headers)
    assert small.status_code == 201


# --- Update and delete --------------------------------------------------------------------------


async def test_put_replaces_and_patch_changes_only_what_is_sent(client, new_user):
    user = await new_user(client)
    post = await make_post(client, user, title="old", content="old content", published=False)
    patched = await client.patch(
        f"/posts/{post['id']}", json={"title": "new"}, headers=user.headers
    )
    assert patched.status_code == 200
    body = patched.json()
    assert (body["title"], body["content"], body["published"]) == ("new", "old content", False)
    assert body["updated_at"] >= post["updated_at"]
    assert body["created_at"] == post["created_at"]

    replaced = await client.put(
        f"/posts/{post['id']}", json={"title": "t2", "content": "c2"}, headers=user.headers
    )
    assert replaced.status_code == 200
    body = replaced.json()
    assert (body["title"], body["content"], body["published"]) == ("t2", "c2", True)
    assert body["owner"] == {"id": user.id, "username": user.username}

    missing = await client.put(f"/posts/{post['id']}", json={"title": "t3"}, headers=user.headers)
    assert missing.status_code == 422
    null = await client.patch(f"/posts/{post['id']}", json={"title": None}, headers=user.headers)
    assert null.status_code == 422
    owner = await client.patch(f"/posts/{post['id']}", json={"owner_id": 99}, headers=user.headers)
    assert owner.status_code == 422
    fetched = (await client.get(f"/posts/{post['id']}", headers=user.headers)).json()
    assert (fetched["title"], fetched["content"]) == ("t2", "c2")


async def test_only_the_owner_updates_or_deletes(client, new_user):
    owner = await new_user(client)
    other = await new_user(client)
    post = await make_post(client, owner)
    for method, body in [("PUT", {"title": "t", "content": "c"}), ("PATCH", {"title": "x"})]:
        response = await client.request(
            method, f"/posts/{post['id']}", json=body, headers=other.headers
        )
        assert response.status_code == 403
        assert response.json()["code"] == "NOT_POST_OWNER"
    refused = await client.delete(f"/posts/{post['id']}", headers=other.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "NOT_POST_OWNER"
    assert (await client.get(f"/posts/{post['id']}", headers=other.headers)).json() == post

    for method in ("PUT", "PATCH", "DELETE"):
        response = await client.request(
            method, "/posts/424242", json={"title": "t", "content": "c"}, headers=owner.headers
        )
        assert response.status_code == 404
        assert response.json()["code"] == "POST_NOT_FOUND"


async def test_delete_removes_the_post_and_its_votes(client, new_user):
    owner = await new_user(client)
    voter = await new_user(client)
    post = await make_post(client, owner)
    keep = await make_post(client, owner)
    for target in (post, keep):
        voted = await client.post(
            "/vote", json={"post_id": target["id"], "dir": 1}, headers=voter.headers
        )
        assert voted.status_code == 201
    deleted = await client.delete(f"/posts/{post['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"/posts/{post['id']}", headers=owner.headers)).status_code == 404
    assert (await client.delete(f"/posts/{post['id']}", headers=owner.headers)).status_code == 404
    async with client.kit.db.sessionmaker() as session:
        votes = (await session.execute(select(Vote.post_id))).scalars().all()
    assert votes == [keep["id"]]


async def test_deleting_a_user_removes_their_posts_and_votes(client, new_user):
    author = await new_user(client)
    leaver = await new_user(client)
    kept = await make_post(client, author)
    gone = await make_post(client, leaver)
    for voter in (author, leaver):
        response = await client.post(
            "/vote", json={"post_id": kept["id"], "dir": 1}, headers=voter.headers
        )
        assert response.status_code == 201
    await client.post("/vote", json={"post_id": gone["id"], "dir": 1}, headers=author.headers)

    async with client.kit.db.sessionmaker() as session:
        assert await client.kit.votes.withdraw_all(session, user_id=leaver.id) == 1
        await session.delete(await session.get(User, leaver.id))
        await session.commit()

    async with client.kit.db.sessionmaker() as session:
        posts = (await session.execute(select(Post.id, Post.vote_count))).all()
        votes = (await session.execute(select(Vote.user_id, Vote.post_id))).all()
    assert posts == [(kept["id"], 1)]
    assert votes == [(author.id, kept["id"])]
    assert (await client.get(f"/posts/{kept['id']}", headers=author.headers)).json()["votes"] == 1


async def test_deleting_a_user_with_plain_sql_cascades(client, new_user):
    leaver = await new_user(client)
    other = await new_user(client)
    post = await make_post(client, leaver)
    await client.post("/vote", json={"post_id": post["id"], "dir": 1}, headers=other.headers)
    async with client.kit.db.engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM postkit_users WHERE id = :id"), {"id": leaver.id}
        )
    async with client.kit.db.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Post)) == 0
        assert await session.scalar(select(func.count()).select_from(Vote)) == 0


# --- The feed -----------------------------------------------------------------------------------


async def test_feed_is_newest_first_with_limit_and_skip(client, new_user):
    user = await new_user(client)
    created = [(await make_post(client, user, title=f"post {n}"))["id"] for n in range(12)]
    newest_first = created[::-1]
    assert ids(await feed(client, user)) == newest_first[:10]
    assert ids(await feed(client, user, limit=3)) == newest_first[:3]
    assert ids(await feed(client, user, limit=3, skip=4)) == newest_first[4:7]
    assert ids(await feed(client, user, limit=100, skip=11)) == newest_first[11:]
    assert ids(await feed(client, user, skip=50)) == []


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 6}, {"limit": "x"}, {"skip": -1}, {"sort": "old"}]
)
async def test_feed_parameters_out_of_range_are_422(make_client, new_user, params):
    client = await make_client(posts_max_limit=5, posts_default_limit=2)
    user = await new_user(client)
    response = await feed(client, user, **params)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_feed_limits_come_from_settings(make_client, new_user):
    client = await make_client(posts_max_limit=5, posts_default_limit=2)
    user = await new_user(client)
    for n in range(6):
        await make_post(client, user, title=f"p{n}")
    assert len(ids(await feed(client, user))) == 2
    assert len(ids(await feed(client, user, limit=5))) == 5
    schema = client.app.openapi()["paths"]["/posts"]["get"]["parameters"]
    limit = next(p for p in schema if p["name"] == "limit")["schema"]
    assert (limit["maximum"], limit["default"]) == (5, 2)


async def test_search_is_case_insensitive_and_literal(client, new_user):
    user = await new_user(client)
    posts = {
        "percent": await make_post(client, user, title="100% sure", content="x"),
        "underscore": await make_post(client, user, title="snake_case", content="x"),
        "backslash": await make_post(client, user, title="C:\\path", content="x"),
        "plain": await make_post(client, user, title="Plain", content="Hello WORLD"),
        "lookalike": await make_post(client, user, title="1000 sure", content="snakeXcase"),
    }

    async def found(term: str) -> set[str]:
        response = await feed(client, user, search=term)
        by_id = {post["id"]: name for name, post in posts.items()}
        return {by_id[post_id] for post_id in ids(response)}

    assert await found("00%") == {"percent"}
    assert await found("0% s") == {"percent"}
    assert await found("_ca") == {"underscore"}
    assert await found("e_c") == {"underscore"}
    assert await found("C:\\") == {"backslash"}
    assert await found(":\\p") == {"backslash"}
    assert await found("hello world") == {"plain"}
    assert await found("PLAIN") == {"plain"}
    assert await found("sure") == {"percent", "lookalike"}
    assert await found("nothing like it") == set()
    nul = await feed(client, user, search="a\x00b")
    assert nul.status_code == 422
    assert (await feed(client, user, search="x" * 201)).status_code == 422


def next_link(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        assert "x-next-cursor" not in response.headers
        return None
    url, rel = link.split("; ")
    assert rel == 'rel="next"'
    assert url.startswith("<")
    assert url.endswith(">")
    return url[1:-1]


async def test_keyset_paging_follows_link_headers_across_inserts(client, new_user):
    user = await new_user(client)
    created = [(await make_post(client, user, title=f"page post {n}"))["id"] for n in range(7)]
    first = await feed(client, user, limit=3, search="page post")
    assert ids(first) == created[::-1][:3]
    link = next_link(first)
    assert link is not None
    assert "limit=3" in link
    assert "search=page+post" in link
    assert first.headers["x-next-cursor"] in link

    # New posts arriving between pages do not shift the following pages.
    for n in range(3):
        await make_post(client, user, title=f"page post new {n}")
    seen = ids(first)
    response = first
    while (link := next_link(response)) is not None:
        response = await client.get(link, headers=user.headers)
        seen += ids(response)
    assert seen == created[::-1]


async def test_last_full_page_may_not_announce_a_next_page(client, new_user):
    user = await new_user(client)
    for n in range(4):
        await make_post(client, user, title=f"p{n}")
    assert next_link(await feed(client, user, limit=4)) is None
    assert next_link(await feed(client, user, limit=5)) is None
    assert next_link(await feed(client, user, limit=3)) is not None


async def test_sort_top_orders_by_votes_and_pages_by_cursor(client, new_user):
    author = await new_user(client)
    voters = [await new_user(client) for _ in range(3)]
    posts = [(await make_post(client, author, title=f"p{n}"))["id"] for n in range(5)]
    # posts[1]: 3 votes, posts[3]: 2 votes, posts[0]: 1 vote, posts[2] and posts[4]: none.
    for post_id, count in [(posts[1], 3), (posts[3], 2), (posts[0], 1)]:
        for voter in voters[:count]:
            response = await client.put(f"/posts/{post_id}/vote", headers=voter.headers)
            assert response.status_code == 201
    expected = [posts[1], posts[3], posts[0], posts[4], posts[2]]
    assert ids(await feed(client, author, sort="top")) == expected
    top = await feed(client, author, sort="top", limit=2)
    assert ids(top) == expected[:2]
    assert [post["votes"] for post in top.json()] == [3, 2]
    seen = ids(top)
    response = top
    while (link := next_link(response)) is not None:
        assert "sort=top" in link
        response = await client.get(link, headers=author.headers)
        seen += ids(response)
    assert seen == expected


@pytest.mark.parametrize(
    "cursor", ["garbage", "e30", "eyJzIjoibmV3IiwiayI6MSwiaSI6MX0", "!!!!", "x" * 513]
)
async def test_invalid_cursors_are_refused(client, new_user, cursor):
    user = await new_user(client)
    response = await feed(client, user, cursor=cursor)
    assert response.status_code in (400, 422)
    assert response.json()["code"] in ("INVALID_CURSOR", "VALIDATION_ERROR")


async def test_a_cursor_belongs_to_its_sort(client, new_user):
    user = await new_user(client)
    for n in range(3):
        await make_post(client, user, title=f"p{n}")
    cursor = (await feed(client, user, limit=1)).headers["x-next-cursor"]
    response = await feed(client, user, sort="top", cursor=cursor)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_CURSOR"


async def test_paging_headers_are_in_the_openapi_schema(client):
    operation = client.app.openapi()["paths"]["/posts"]["get"]
    headers = operation["responses"]["200"]["headers"]
    assert set(headers) == {"Link", "X-Next-Cursor"}


async def test_the_feed_is_one_query_whatever_the_page_size(client, new_user):
    users = [await new_user(client) for _ in range(3)]
    for n in range(12):
        await make_post(client, users[n % 3], title=f"p{n}")
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = client.kit.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        page = await feed(client, users[0], limit=12)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(page.json()) == 12
    assert {post["owner"]["username"] for post in page.json()} == {u.username for u in users}
    touching_posts = [s for s in statements if "postkit_posts" in s]
    assert len(touching_posts) == 1
    assert "postkit_votes" not in touching_posts[0]


async def test_concurrent_creates_all_land(client, new_user):
    user = await new_user(client)
    responses = await asyncio.gather(
        *(
            client.post("/posts", json={"title": f"t{n}", "content": "c"}, headers=user.headers)
            for n in range(8)
        )
    )
    assert [r.status_code for r in responses] == [201] * 8
    assert len(ids(await feed(client, user, limit=20))) == 8


async def test_concurrent_deletes_and_updates_of_one_post_never_500(client, new_user):
    from collections import Counter
    from contextlib import AsyncExitStack

    user = await new_user(client)
    post = await make_post(client, user)
    url = f"/posts/{post['id']}"
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=client.app), base_url="http://testserver"
                )
            )
            for _ in range(8)
        ]
        responses = await asyncio.gather(
            *(
                http.delete(url, headers=user.headers)
                if n % 2
                else http.patch(url, json={"title": f"t{n}"}, headers=user.headers)
                for n, http in enumerate(clients)
            )
        )
    deletes = Counter(r.status_code for n, r in enumerate(responses) if n % 2)
    updates = Counter(r.status_code for n, r in enumerate(responses) if not n % 2)
    assert deletes[204] == 1
    assert deletes[404] == 3
    assert set(updates) <= {200, 404}
    assert (await client.get(url, headers=user.headers)).status_code == 404
