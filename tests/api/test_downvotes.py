"""Down-votes through HTTP on SQLite and PostgreSQL: dir -1 on POST /vote and PUT
/posts/{id}/vote, switching direction, the allow_downvotes setting, the vote hooks seeing -1,
exact counters and ranks under concurrency, and account deletion keeping them exact."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from sqlalchemy import case, func, select

from postkit import VoteRejected, hookimpl
from postkit.models import Post, Vote
from postkit.ranking import rank_scores
from tests.support.api import make_post


async def recount(client: Any, post_id: int) -> dict[str, Any]:
    """The post's stored counters and ranks next to a recount from its vote rows."""
    async with client.kit.db.sessionmaker() as session:
        post = (await session.execute(select(Post).where(Post.id == post_id))).scalar_one()
        score, up, down, rows = (
            await session.execute(
                select(
                    func.coalesce(func.sum(Vote.weight), 0),
                    func.coalesce(func.sum(case((Vote.direction == 1, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((Vote.direction == -1, 1), else_=0)), 0),
                    func.count(),
                ).where(Vote.post_id == post_id)
            )
        ).one()
    return {
        "stored": (post.vote_count, post.upvotes, post.downvotes),
        "counted": (int(score), int(up), int(down)),
        "rows": rows,
        "ranks": {
            "hot_rank": post.hot_rank,
            "best_rank": post.best_rank,
            "controversial_rank": post.controversial_rank,
        },
        "expected_ranks": rank_scores(
            score=post.vote_count,
            upvotes=post.upvotes,
            downvotes=post.downvotes,
            created_at=post.created_at,
        ),
    }


async def assert_exact(client: Any, post_id: int, expected: tuple[int, int, int]) -> None:
    state = await recount(client, post_id)
    assert state["stored"] == state["counted"] == expected
    assert state["ranks"] == state["expected_ranks"]


def answer(post_id: int, direction: int, score: int, up: int, down: int) -> dict[str, int]:
    return {
        "post_id": post_id,
        "dir": direction,
        "score": score,
        "upvotes": up,
        "downvotes": down,
        "votes": score,
    }


async def test_post_vote_down_switch_and_remove(client, new_user):
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    pid = post["id"]

    down = await client.post("/vote", json={"post_id": pid, "dir": -1}, headers=voter.headers)
    assert down.status_code == 201
    assert down.json() == answer(pid, -1, -1, 0, 1)
    await assert_exact(client, pid, (-1, 0, 1))

    again = await client.post("/vote", json={"post_id": pid, "dir": -1}, headers=voter.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "ALREADY_VOTED"

    up = await client.post("/vote", json={"post_id": pid, "dir": 1}, headers=voter.headers)
    assert up.status_code == 201
    assert up.json() == answer(pid, 1, 1, 1, 0)
    await assert_exact(client, pid, (1, 1, 0))
    assert (
        await client.post("/vote", json={"post_id": pid, "dir": 1}, headers=voter.headers)
    ).status_code == 409

    back_down = await client.post("/vote", json={"post_id": pid, "dir": -1}, headers=voter.headers)
    assert back_down.json() == answer(pid, -1, -1, 0, 1)
    removed = await client.post("/vote", json={"post_id": pid, "dir": 0}, headers=voter.headers)
    assert removed.status_code == 201
    assert removed.json() == answer(pid, 0, 0, 0, 0)
    await assert_exact(client, pid, (0, 0, 0))

    shown = (await client.get(f"/posts/{pid}", headers=voter.headers)).json()
    assert (shown["score"], shown["upvotes"], shown["downvotes"], shown["votes"]) == (0, 0, 0, 0)


async def test_put_vote_with_a_direction(client, new_user):
    author, voter = await new_user(client), await new_user(client)
    pid = (await make_post(client, author))["id"]
    url = f"/posts/{pid}/vote"

    down = await client.put(url, json={"dir": -1}, headers=voter.headers)
    assert down.status_code == 201
    assert down.json() == answer(pid, -1, -1, 0, 1)
    same = await client.put(url, json={"dir": -1}, headers=voter.headers)
    assert same.status_code == 200
    assert same.json() == answer(pid, -1, -1, 0, 1)
    # No body is an up-vote, as before down-votes: it switches the down-vote.
    up = await client.put(url, headers=voter.headers)
    assert up.status_code == 201
    assert up.json() == answer(pid, 1, 1, 1, 0)
    assert (await client.put(url, json={"dir": 1}, headers=voter.headers)).status_code == 200
    await assert_exact(client, pid, (1, 1, 0))

    assert (await client.delete(url, headers=voter.headers)).status_code == 204
    await assert_exact(client, pid, (0, 0, 0))
    assert (await client.put(url, json={"dir": -1}, headers=voter.headers)).status_code == 201
    assert (await client.delete(url, headers=voter.headers)).status_code == 204
    await assert_exact(client, pid, (0, 0, 0))


@pytest.mark.parametrize(
    "body", [{"dir": 0}, {"dir": 2}, {"dir": -1.0}, {"dir": True}, {"dir": "-1"}, {"x": 1}]
)
async def test_put_vote_refuses_other_bodies(client, new_user, body):
    author, voter = await new_user(client), await new_user(client)
    pid = (await make_post(client, author))["id"]
    response = await client.put(f"/posts/{pid}/vote", json=body, headers=voter.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
    await assert_exact(client, pid, (0, 0, 0))


async def test_downvotes_can_be_turned_off(make_client, new_user):
    client = await make_client(allow_downvotes=False)
    author, voter = await new_user(client), await new_user(client)
    pid = (await make_post(client, author))["id"]
    refusals = [
        await client.post("/vote", json={"post_id": pid, "dir": -1}, headers=voter.headers),
        await client.put(f"/posts/{pid}/vote", json={"dir": -1}, headers=voter.headers),
    ]
    for refused in refusals:
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "Down-votes are turned off here: vote with dir 1, or remove your vote "
            "with dir 0",
            "code": "DOWNVOTES_DISABLED",
        }
    await assert_exact(client, pid, (0, 0, 0))
    up = await client.put(f"/posts/{pid}/vote", headers=voter.headers)
    assert up.status_code == 201
    assert up.json() == answer(pid, 1, 1, 1, 0)


class DirectionalWeights:
    """Up-votes count 3, down-votes 2; records every direction it was asked about."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    @hookimpl
    def vote_weight(self, direction: int) -> int:
        self.asked.append(direction)
        return 3 if direction == 1 else 2


async def test_vote_weight_weighs_downvotes(make_client, new_user):
    weights = DirectionalWeights()
    client = await make_client(plugins=[weights])
    author, voter, other = await new_user(client), await new_user(client), await new_user(client)
    pid = (await make_post(client, author))["id"]

    down = await client.put(f"/posts/{pid}/vote", json={"dir": -1}, headers=voter.headers)
    assert down.json() == answer(pid, -1, -2, 0, 1)
    up = await client.post("/vote", json={"post_id": pid, "dir": 1}, headers=other.headers)
    assert up.json() == answer(pid, 1, 1, 1, 1)
    switched = await client.put(f"/posts/{pid}/vote", headers=voter.headers)
    assert switched.json() == answer(pid, 1, 6, 2, 0)
    await assert_exact(client, pid, (6, 2, 0))
    async with client.kit.db.sessionmaker() as session:
        rows = await session.execute(select(Vote.user_id, Vote.weight).where(Vote.post_id == pid))
        stored = {row.user_id: row.weight for row in rows}
    assert stored == {voter.id: 3, other.id: 3}
    # Removal takes back the stored weight without asking again.
    removed = await client.post("/vote", json={"post_id": pid, "dir": 0}, headers=voter.headers)
    assert removed.json() == answer(pid, 0, 3, 1, 0)
    assert weights.asked == [-1, 1, 1]


class NoDownvotesOnNewPosts:
    """Refuses down-votes (but lets removals and up-votes through)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @hookimpl
    def validate_vote(self, direction: int) -> None:
        self.seen.append(direction)
        if direction == -1:
            raise VoteRejected("Be kind", code="NO_DOWNVOTES")


async def test_validate_vote_can_refuse_downvotes(make_client, new_user):
    rules = NoDownvotesOnNewPosts()
    client = await make_client(plugins=[rules])
    author, voter = await new_user(client), await new_user(client)
    pid = (await make_post(client, author))["id"]
    assert (await client.put(f"/posts/{pid}/vote", headers=voter.headers)).status_code == 201
    for refused in (
        await client.put(f"/posts/{pid}/vote", json={"dir": -1}, headers=voter.headers),
        await client.post("/vote", json={"post_id": pid, "dir": -1}, headers=voter.headers),
    ):
        assert refused.status_code == 422
        assert refused.json() == {"detail": "Be kind", "code": "NO_DOWNVOTES"}
    await assert_exact(client, pid, (1, 1, 0))
    assert (await client.delete(f"/posts/{pid}/vote", headers=voter.headers)).status_code == 204
    assert rules.seen == [1, -1, -1, 0]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    @hookimpl
    def after_vote(self, post: Post, direction: int, previous: int) -> None:
        self.calls.append((direction, previous, post.vote_count))


async def test_after_vote_sees_switches(make_client, new_user):
    recorder = Recorder()
    client = await make_client(plugins=[recorder])
    author, voter = await new_user(client), await new_user(client)
    pid = (await make_post(client, author))["id"]
    url = f"/posts/{pid}/vote"
    await client.put(url, headers=voter.headers)
    await client.put(url, json={"dir": -1}, headers=voter.headers)
    await client.put(url, json={"dir": -1}, headers=voter.headers)  # unchanged: not called
    await client.delete(url, headers=voter.headers)
    assert recorder.calls == [(1, 0, 1), (-1, 1, -1), (0, -1, 0)]


async def _separate_clients(stack: AsyncExitStack, app: Any, count: int) -> list[httpx.AsyncClient]:
    return [
        await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        )
        for _ in range(count)
    ]


async def test_many_users_voting_up_and_down_at_once_give_exact_counters(client, new_user):
    author = await new_user(client)
    voters = [await new_user(client) for _ in range(16)]
    pid = (await make_post(client, author))["id"]
    directions = [1 if index % 3 else -1 for index in range(len(voters))]
    async with AsyncExitStack() as stack:
        clients = await _separate_clients(stack, client.app, len(voters))
        cast = await asyncio.gather(
            *(
                http.post("/vote", json={"post_id": pid, "dir": d}, headers=voter.headers)
                for http, voter, d in zip(clients, voters, directions, strict=True)
            )
        )
        assert [r.status_code for r in cast] == [201] * len(voters)
        ups, downs = directions.count(1), directions.count(-1)
        await assert_exact(client, pid, (ups - downs, ups, downs))

        # Everyone switches at once: through PUT for half of them, POST /vote for the rest.
        switched = await asyncio.gather(
            *(
                http.put(f"/posts/{pid}/vote", json={"dir": -d}, headers=voter.headers)
                if index % 2
                else http.post("/vote", json={"post_id": pid, "dir": -d}, headers=voter.headers)
                for index, (http, voter, d) in enumerate(
                    zip(clients, voters, directions, strict=True)
                )
            )
        )
        assert [r.status_code for r in switched] == [201] * len(voters)
        await assert_exact(client, pid, (downs - ups, downs, ups))


async def test_one_user_racing_itself_up_and_down_stays_exact(client, new_user):
    author, voter = await new_user(client), await new_user(client)
    pid = (await make_post(client, author))["id"]
    url = f"/posts/{pid}/vote"
    rng = random.Random(14)
    async with AsyncExitStack() as stack:
        clients = await _separate_clients(stack, client.app, 10)
        for _ in range(3):
            requests = []
            for http in clients:
                kind = rng.choice(["up", "down", "post-up", "post-down", "delete"])
                if kind == "up":
                    requests.append(http.put(url, json={"dir": 1}, headers=voter.headers))
                elif kind == "down":
                    requests.append(http.put(url, json={"dir": -1}, headers=voter.headers))
                elif kind == "delete":
                    requests.append(http.delete(url, headers=voter.headers))
                else:
                    direction = 1 if kind == "post-up" else -1
                    requests.append(
                        http.post(
                            "/vote", json={"post_id": pid, "dir": direction}, headers=voter.headers
                        )
                    )
            responses = await asyncio.gather(*requests)
            assert Counter(r.status_code for r in responses).keys() <= {200, 201, 204, 409}
            state = await recount(client, pid)
            assert state["rows"] in (0, 1)
            assert state["stored"] == state["counted"]
            assert state["ranks"] == state["expected_ranks"]


async def test_account_deletion_keeps_counters_exact_with_downvotes(client, new_user):
    author = await new_user(client)
    leaver, stayer = await new_user(client), await new_user(client)
    posts = [(await make_post(client, author))["id"] for _ in range(3)]
    await client.put(f"/posts/{posts[0]}/vote", json={"dir": -1}, headers=leaver.headers)
    await client.put(f"/posts/{posts[1]}/vote", headers=leaver.headers)
    await client.put(f"/posts/{posts[0]}/vote", headers=stayer.headers)
    await client.put(f"/posts/{posts[1]}/vote", json={"dir": -1}, headers=stayer.headers)
    await client.put(f"/posts/{posts[2]}/vote", json={"dir": -1}, headers=leaver.headers)
    await assert_exact(client, posts[0], (0, 1, 1))

    deleted = await client.request(
        "DELETE", "/users/me", json={"current_password": leaver.password}, headers=leaver.headers
    )
    assert deleted.status_code == 204, deleted.text
    await assert_exact(client, posts[0], (1, 1, 0))
    await assert_exact(client, posts[1], (-1, 0, 1))
    await assert_exact(client, posts[2], (0, 0, 0))


async def test_host_code_votes_switch_and_remove_through_a_session(client, new_user):
    # kit.votes.cast/remove with the host's own session run the same statements through
    # SQLAlchemy's execution (not the routes' driver path): the switch and the removal too.
    author, voter = await new_user(client), await new_user(client)
    pid = (await make_post(client, author))["id"]
    kit = client.kit
    async with kit.db.sessionmaker() as session:
        user = await kit.accounts.find_by_login(session, login=voter.username)
        assert user is not None
        up = await kit.votes.cast(session, post_id=pid, user=user, strict=True)
        assert (up.changed, up.direction, up.score, up.upvotes, up.downvotes) == (True, 1, 1, 1, 0)
        down = await kit.votes.cast(session, post_id=pid, user=user, strict=True, direction=-1)
        assert (down.changed, down.direction, down.score, down.upvotes, down.downvotes) == (
            True,
            -1,
            -1,
            0,
            1,
        )
        same = await kit.votes.cast(session, post_id=pid, user=user, strict=False, direction=-1)
        assert (same.changed, same.score) == (False, -1)
        await assert_exact(client, pid, (-1, 0, 1))
        removed = await kit.votes.remove(session, post_id=pid, user=user, strict=True)
        assert (removed.changed, removed.direction, removed.score) == (True, 0, 0)
    await assert_exact(client, pid, (0, 0, 0))
    shown = (await client.get(f"/posts/{pid}", headers=voter.headers)).json()
    assert (shown["score"], shown["upvotes"], shown["downvotes"]) == (0, 0, 0)
