"""Votes through HTTP on SQLite and PostgreSQL: POST /vote, the idempotent PUT/DELETE form,
visibility, exact counters, and races (one user many times, many users at once)."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from postkit.models import Post, Vote
from tests.support.api import make_post


async def stored_state(client: Any, post_id: int) -> tuple[int, int]:
    """(the post's vote_count column, the number of vote rows) straight from the database."""
    async with client.kit.db.sessionmaker() as session:
        count = await session.scalar(select(Post.vote_count).where(Post.id == post_id))
        rows = (await session.execute(select(Vote.user_id).where(Vote.post_id == post_id))).all()
    return count, len(rows)


def counts(score: int, upvotes: int | None = None, downvotes: int = 0) -> dict[str, int]:
    """A vote answer's counters: ``score`` (and its deprecated alias ``votes``), up and down."""
    return {
        "score": score,
        "upvotes": score if upvotes is None else upvotes,
        "downvotes": downvotes,
        "votes": score,
    }


async def test_vote_and_unvote(client, new_user):
    author = await new_user(client)
    voter = await new_user(client)
    post = await make_post(client, author)

    voted = await client.post(
        "/vote", json={"post_id": post["id"], "dir": 1}, headers=voter.headers
    )
    assert voted.status_code == 201
    assert voted.json() == {"post_id": post["id"], "dir": 1, **counts(1)}
    fetched = await client.get(f"/posts/{post['id']}", headers=voter.headers)
    assert fetched.json()["votes"] == 1

    again = await client.post(
        "/vote", json={"post_id": post["id"], "dir": 1}, headers=voter.headers
    )
    assert again.status_code == 409
    assert again.json() == {
        "detail": "You have already voted on this post",
        "code": "ALREADY_VOTED",
    }
    assert await stored_state(client, post["id"]) == (1, 1)

    removed = await client.post(
        "/vote", json={"post_id": post["id"], "dir": 0}, headers=voter.headers
    )
    assert removed.status_code == 201
    assert removed.json() == {"post_id": post["id"], "dir": 0, **counts(0)}
    missing = await client.post(
        "/vote", json={"post_id": post["id"], "dir": 0}, headers=voter.headers
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "VOTE_NOT_FOUND"
    assert await stored_state(client, post["id"]) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"post_id": 1, "dir": 2},
        {"post_id": 1, "dir": -2},
        {"post_id": 1, "dir": -1.0},
        {"post_id": 1, "dir": "up"},
        {"post_id": 1, "dir": 1.5},
        {"post_id": 1, "dir": True},
        {"post_id": 1, "dir": 1.0},
        {"post_id": 1, "dir": "1"},
        {"post_id": "1", "dir": 1},
        {"post_id": 1},
        {"dir": 1},
        {"post_id": "one", "dir": 1},
        {"post_id": 1, "dir": 1, "user_id": 2},
    ],
)
async def test_invalid_vote_bodies_are_422(client, new_user, body):
    user = await new_user(client)
    await make_post(client, user)
    response = await client.post("/vote", json=body, headers=user.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert await stored_state(client, 1) == (0, 0)


async def test_votes_need_a_token(client, new_user):
    user = await new_user(client)
    post = await make_post(client, user)
    for method, url, body in [
        ("POST", "/vote", {"post_id": post["id"], "dir": 1}),
        ("PUT", f"/posts/{post['id']}/vote", None),
        ("DELETE", f"/posts/{post['id']}/vote", None),
    ]:
        response = await client.request(method, url, json=body)
        assert response.status_code == 401
        assert response.json()["code"] == "NOT_AUTHENTICATED"


async def test_unknown_posts_and_others_drafts_are_404(client, new_user):
    author = await new_user(client)
    voter = await new_user(client)
    draft = await make_post(client, author, published=False)
    for post_id in (draft["id"], 987_654, 2**40):
        for direction in (1, 0):
            response = await client.post(
                "/vote", json={"post_id": post_id, "dir": direction}, headers=voter.headers
            )
            assert response.status_code == 404, (post_id, direction)
            assert response.json()["code"] == "POST_NOT_FOUND"
        for method in ("PUT", "DELETE"):
            response = await client.request(method, f"/posts/{post_id}/vote", headers=voter.headers)
            assert response.status_code == 404
            assert response.json()["code"] == "POST_NOT_FOUND"
    # The author sees their draft, so may vote on it.
    own = await client.put(f"/posts/{draft['id']}/vote", headers=author.headers)
    assert own.status_code == 201


async def test_put_and_delete_are_idempotent(client, new_user):
    author = await new_user(client)
    voter = await new_user(client)
    post = await make_post(client, author)
    url = f"/posts/{post['id']}/vote"

    first = await client.put(url, headers=voter.headers)
    assert first.status_code == 201
    assert first.json() == {"post_id": post["id"], "dir": 1, **counts(1)}
    second = await client.put(url, headers=voter.headers)
    assert second.status_code == 200
    assert second.json() == {"post_id": post["id"], "dir": 1, **counts(1)}
    assert await stored_state(client, post["id"]) == (1, 1)

    for _ in range(2):
        deleted = await client.delete(url, headers=voter.headers)
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert await stored_state(client, post["id"]) == (0, 0)


async def test_deleting_a_post_takes_its_votes(client, new_user):
    author = await new_user(client)
    voter = await new_user(client)
    post = await make_post(client, author)
    await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    assert (await client.delete(f"/posts/{post['id']}", headers=author.headers)).status_code == 204
    assert await stored_state(client, post["id"]) == (None, 0)
    gone = await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    assert gone.status_code == 404


async def _separate_clients(stack: AsyncExitStack, app: Any, count: int) -> list[httpx.AsyncClient]:
    return [
        await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        )
        for _ in range(count)
    ]


async def test_one_user_voting_ten_times_at_once_counts_once(client, new_user):
    author = await new_user(client)
    voter = await new_user(client)
    post = await make_post(client, author)
    async with AsyncExitStack() as stack:
        clients = await _separate_clients(stack, client.app, 10)
        responses = await asyncio.gather(
            *(
                http.post("/vote", json={"post_id": post["id"], "dir": 1}, headers=voter.headers)
                for http in clients
            )
        )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: 9}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"ALREADY_VOTED"}
    assert await stored_state(client, post["id"]) == (1, 1)


async def test_one_user_retrying_put_and_delete_at_once_stays_consistent(client, new_user):
    author = await new_user(client)
    voter = await new_user(client)
    post = await make_post(client, author)
    url = f"/posts/{post['id']}/vote"
    async with AsyncExitStack() as stack:
        clients = await _separate_clients(stack, client.app, 8)
        puts = await asyncio.gather(*(http.put(url, headers=voter.headers) for http in clients))
        assert Counter(r.status_code for r in puts) == {201: 1, 200: 7}
        assert await stored_state(client, post["id"]) == (1, 1)
        deletes = await asyncio.gather(
            *(http.delete(url, headers=voter.headers) for http in clients)
        )
    assert {r.status_code for r in deletes} == {204}
    assert await stored_state(client, post["id"]) == (0, 0)


async def test_twenty_users_voting_at_once_give_an_exact_count(client, new_user):
    author = await new_user(client)
    voters = [await new_user(client) for _ in range(20)]
    post = await make_post(client, author)
    async with AsyncExitStack() as stack:
        clients = await _separate_clients(stack, client.app, 20)
        responses = await asyncio.gather(
            *(
                http.post("/vote", json={"post_id": post["id"], "dir": 1}, headers=voter.headers)
                for http, voter in zip(clients, voters, strict=True)
            )
        )
        assert [response.status_code for response in responses] == [201] * 20
        assert sorted(r.json()["votes"] for r in responses) == list(range(1, 21))
        assert await stored_state(client, post["id"]) == (20, 20)

        removals = await asyncio.gather(
            *(
                http.post("/vote", json={"post_id": post["id"], "dir": 0}, headers=voter.headers)
                for http, voter in zip(clients[:7], voters[:7], strict=True)
            )
        )
    assert [response.status_code for response in removals] == [201] * 7
    assert await stored_state(client, post["id"]) == (13, 13)
    fetched = await client.get(f"/posts/{post['id']}", headers=author.headers)
    assert fetched.json()["votes"] == 13


async def test_votes_do_not_touch_the_posts_updated_at(client, new_user):
    """A vote changes the post's count, not the post: updated_at stays where the last edit
    put it."""
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    assert (await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)).status_code == 201
    after_vote = (await client.get(f"/posts/{post['id']}", headers=voter.headers)).json()
    assert after_vote["votes"] == 1
    assert after_vote["updated_at"] == post["updated_at"]
    assert (
        await client.delete(f"/posts/{post['id']}/vote", headers=voter.headers)
    ).status_code == 204
    after_unvote = (await client.get(f"/posts/{post['id']}", headers=voter.headers)).json()
    assert after_unvote["updated_at"] == post["updated_at"]
