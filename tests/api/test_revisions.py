"""Post edit history through HTTP on SQLite and PostgreSQL: GET /posts/{id}/revisions (order,
keyset paging, the revisions_visible_to setting, drafts), edited_at, and concurrent edits each
keeping the version they replaced."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from tests.support.api import make_post


async def history(client: Any, post_id: int, headers: dict[str, str], **params: Any) -> list[Any]:
    pages: list[Any] = []
    cursor = None
    for _ in range(50):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = await client.get(f"/posts/{post_id}/revisions", params=query, headers=headers)
        assert response.status_code == 200, response.text
        pages.extend(response.json())
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            return pages
    raise AssertionError("too many pages")


async def test_each_edit_keeps_the_previous_version_newest_first(client, new_user):
    author, reader = await new_user(client), await new_user(client)
    post = await make_post(client, author, title="v1", content="first")
    assert post["edited_at"] is None
    assert (await client.get(f"/posts/{post['id']}/revisions", headers=reader.headers)).json() == []

    edits = [{"title": "v2"}, {"content": "second"}, {"title": "v4", "content": "fourth"}]
    answers = []
    for change in edits:
        response = await client.patch(f"/posts/{post['id']}", json=change, headers=author.headers)
        assert response.status_code == 200
        answers.append(response.json())
    latest = answers[-1]
    assert latest["edited_at"] is not None
    assert latest["edited_at"] == latest["updated_at"]
    assert answers[0]["edited_at"] < answers[1]["edited_at"] < latest["edited_at"]
    assert (await client.get(f"/posts/{post['id']}", headers=reader.headers)).json() == latest

    for limit in (1, 2, 10):
        revisions = await history(client, post["id"], reader.headers, limit=limit)
        assert [(r["title"], r["content"]) for r in revisions] == [
            ("v2", "second"),
            ("v2", "first"),
            ("v1", "first"),
        ]
    assert set(revisions[0]) == {"id", "post_id", "title", "content", "published", "replaced_at"}
    assert [r["replaced_at"] for r in revisions] == [a["edited_at"] for a in reversed(answers)]
    assert {r["post_id"] for r in revisions} == {post["id"]}


async def test_an_update_that_changes_nothing_is_no_revision(client, new_user):
    author = await new_user(client)
    post = await make_post(client, author, title="same", content="same")
    unchanged = await client.put(
        f"/posts/{post['id']}", json={"title": "same", "content": "same"}, headers=author.headers
    )
    assert unchanged.json()["edited_at"] is None
    assert unchanged.json()["updated_at"] == post["updated_at"]
    assert await history(client, post["id"], author.headers) == []


async def test_publishing_is_a_revision_but_not_an_edit(client, new_user):
    author, reader = await new_user(client), await new_user(client)
    draft = await make_post(client, author, title="draft title", published=False)
    # A draft's history is its author's, like the draft.
    hidden = await client.get(f"/posts/{draft['id']}/revisions", headers=reader.headers)
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "POST_NOT_FOUND"

    published = await client.patch(
        f"/posts/{draft['id']}", json={"published": True}, headers=author.headers
    )
    assert published.json()["edited_at"] is None
    edited = await client.patch(
        f"/posts/{draft['id']}", json={"title": "public title"}, headers=author.headers
    )
    assert edited.json()["edited_at"] is not None
    # The version written while a draft was never public: only its author lists it.
    mine = await history(client, draft["id"], author.headers)
    assert [(r["title"], r["published"]) for r in mine] == [
        ("draft title", True),
        ("draft title", False),
    ]
    theirs = await history(client, draft["id"], reader.headers)
    assert [(r["title"], r["published"]) for r in theirs] == [("draft title", True)]


async def test_votes_are_not_edits(client, new_user):
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    await client.put(f"/posts/{post['id']}/vote", json={"dir": -1}, headers=voter.headers)
    shown = (await client.get(f"/posts/{post['id']}", headers=voter.headers)).json()
    assert shown["edited_at"] is None
    assert shown["updated_at"] == post["updated_at"]
    assert await history(client, post["id"], author.headers) == []


async def test_author_only_history(make_client, new_user):
    client = await make_client(revisions_visible_to="author")
    author, reader = await new_user(client), await new_user(client)
    post = await make_post(client, author, title="before")
    await client.patch(f"/posts/{post['id']}", json={"title": "after"}, headers=author.headers)
    assert [r["title"] for r in await history(client, post["id"], author.headers)] == ["before"]
    refused = await client.get(f"/posts/{post['id']}/revisions", headers=reader.headers)
    assert refused.status_code == 404
    assert refused.json()["code"] == "POST_NOT_FOUND"
    # The post itself stays readable.
    assert (await client.get(f"/posts/{post['id']}", headers=reader.headers)).status_code == 200


async def test_public_reads_show_history_to_anonymous_readers(make_client, new_user):
    client = await make_client(public_reads=True)
    author = await new_user(client)
    post = await make_post(client, author, title="before")
    await client.patch(f"/posts/{post['id']}", json={"title": "after"}, headers=author.headers)
    anonymous = await client.get(f"/posts/{post['id']}/revisions")
    assert anonymous.status_code == 200
    assert [r["title"] for r in anonymous.json()] == ["before"]


async def test_revisions_of_missing_posts_and_bad_cursors(client, new_user):
    user = await new_user(client)
    assert (await client.get("/posts/999999/revisions", headers=user.headers)).status_code == 404
    post = await make_post(client, user)
    feed = await client.get("/posts", params={"limit": 1}, headers=user.headers)
    await make_post(client, user)
    feed = await client.get("/posts", params={"limit": 1}, headers=user.headers)
    bad = await client.get(
        f"/posts/{post['id']}/revisions",
        params={"cursor": feed.headers["X-Next-Cursor"]},
        headers=user.headers,
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "INVALID_CURSOR"


async def test_deleting_a_post_deletes_its_history(client, new_user):
    author = await new_user(client)
    post = await make_post(client, author)
    await client.patch(f"/posts/{post['id']}", json={"title": "again"}, headers=author.headers)
    assert (await client.delete(f"/posts/{post['id']}", headers=author.headers)).status_code == 204
    gone = await client.get(f"/posts/{post['id']}/revisions", headers=author.headers)
    assert gone.status_code == 404


@pytest.mark.parametrize("edits", [6])
async def test_concurrent_edits_each_keep_the_version_they_replaced(client, new_user, edits):
    """Edits queue on the post's row: the history is a chain, every version in it once."""
    author = await new_user(client)
    post = await make_post(client, author, title="t0")
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=client.app), base_url="http://testserver"
                )
            )
            for _ in range(edits)
        ]
        responses = await asyncio.gather(
            *(
                http.patch(
                    f"/posts/{post['id']}", json={"title": f"t{n + 1}"}, headers=author.headers
                )
                for n, http in enumerate(clients)
            )
        )
    assert [r.status_code for r in responses] == [200] * edits
    final = (await client.get(f"/posts/{post['id']}", headers=author.headers)).json()["title"]
    titles = [r["title"] for r in await history(client, post["id"], author.headers)]
    assert len(titles) == edits
    assert sorted([*titles, final]) == sorted(f"t{n}" for n in range(edits + 1))
