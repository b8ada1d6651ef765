"""Comment votes and comment races through HTTP on SQLite and PostgreSQL: up, down, change
and removal, ``allow_downvotes``, the vote hooks, exact counters and ranking scores; many users
and one user racing, concurrent replies, replies racing their parent's deletion, and what
deleting an account does to its comments."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from postkit import VoteRejected, hookimpl
from postkit.models import Comment, CommentVote, User
from postkit.ranking import rank_scores
from tests.api.test_comments import comment, counts
from tests.support.api import TestUser, make_post


async def vote_state(client: Any, comment_id: int) -> tuple[int, int, int, int]:
    """(score, upvotes, downvotes, vote rows) from the database, checked against a recount and
    the stored ranking scores against a recomputation."""
    async with client.kit.db.sessionmaker() as session:
        row = (await session.execute(select(Comment).where(Comment.id == comment_id))).scalar_one()
        weights = (
            await session.scalars(
                select(CommentVote.weight).where(CommentVote.comment_id == comment_id)
            )
        ).all()
    assert row.score == sum(weights)
    assert row.upvotes == sum(1 for w in weights if w > 0)
    assert row.downvotes == sum(1 for w in weights if w < 0)
    expected = rank_scores(
        score=row.score, upvotes=row.upvotes, downvotes=row.downvotes, created_at=row.created_at
    )
    assert {name: getattr(row, name) for name in expected} == pytest.approx(expected)
    return row.score, row.upvotes, row.downvotes, len(weights)


async def test_up_down_change_and_remove(client, new_user):
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    target = await comment(client, author, post["id"])
    url = f"/comments/{target['id']}/vote"

    up = await client.put(url, headers=voter.headers)
    assert up.status_code == 201
    assert up.json() == {
        "comment_id": target["id"],
        "dir": 1,
        "score": 1,
        "upvotes": 1,
        "downvotes": 0,
    }
    again = await client.put(url, json={"dir": 1}, headers=voter.headers)
    assert again.status_code == 200
    assert again.json()["score"] == 1
    down = await client.put(url, json={"dir": -1}, headers=voter.headers)
    assert down.status_code == 201
    assert down.json() == {
        "comment_id": target["id"], "dir": -1, "score": -1, "upvotes": 0, "downvotes": 1,
    }  # fmt: skip
    assert await vote_state(client, target["id"]) == (-1, 0, 1, 1)
    shown = (await client.get(f"/comments/{target['id']}", headers=author.headers)).json()
    assert (shown["score"], shown["upvotes"], shown["downvotes"]) == (-1, 0, 1)

    for _ in range(2):  # safe to retry
        removed = await client.delete(url, headers=voter.headers)
        assert removed.status_code == 204
    assert await vote_state(client, target["id"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("body", [{"dir": 0}, {"dir": 2}, {"dir": True}, {"dir": -1.0}, {"x": 1}])
async def test_bad_directions_are_422(client, new_user, body):
    user = await new_user(client)
    post = await make_post(client, user)
    target = await comment(client, user, post["id"])
    response = await client.put(f"/comments/{target['id']}/vote", json=body, headers=user.headers)
    assert response.status_code == 422


async def test_downvotes_can_be_turned_off(make_client, new_user):
    client = await make_client(allow_downvotes=False)
    user = await new_user(client)
    post = await make_post(client, user)
    target = await comment(client, user, post["id"])
    url = f"/comments/{target['id']}/vote"
    refused = await client.put(url, json={"dir": -1}, headers=user.headers)
    assert refused.status_code == 422
    assert refused.json()["code"] == "DOWNVOTES_DISABLED"
    assert (await client.put(url, headers=user.headers)).status_code == 201
    assert await vote_state(client, target["id"]) == (1, 1, 0, 1)


class VoteRules:
    """No votes on one's own comments; moderators' votes weigh 3; every vote recorded."""

    def __init__(self) -> None:
        self.after: list[tuple[int, int, int, int]] = []

    @hookimpl
    def validate_comment_vote(self, comment: Comment, user: User, direction: int) -> None:
        if direction != 0 and comment.author_id == user.id:
            raise VoteRejected("No self-votes", status_code=403, code="SELF_VOTE")

    @hookimpl
    async def comment_vote_weight(self, comment: Comment, user: User, direction: int) -> int | None:
        return 3 if user.username.startswith("mod_") else None

    @hookimpl
    def after_comment_vote(
        self, comment: Comment, user: User, direction: int, previous: int
    ) -> None:
        self.after.append((comment.id, direction, previous, comment.score))


async def test_comment_vote_hooks(make_client, new_user):
    rules = VoteRules()
    client = await make_client(plugins=[rules])
    author = await new_user(client)
    moderator = await new_user(client, username="mod_bea")
    voter = await new_user(client)
    post = await make_post(client, author)
    target = await comment(client, author, post["id"])
    url = f"/comments/{target['id']}/vote"

    self_vote = await client.put(url, headers=author.headers)
    assert self_vote.status_code == 403
    assert self_vote.json()["code"] == "SELF_VOTE"
    assert (await client.put(url, json={"dir": -1}, headers=moderator.headers)).json()[
        "score"
    ] == -3
    assert (await client.put(url, headers=voter.headers)).json()["score"] == -2
    assert (await client.put(url, headers=moderator.headers)).json()["score"] == 4
    assert (await client.put(url, headers=moderator.headers)).status_code == 200  # unchanged
    assert (await client.delete(url, headers=moderator.headers)).status_code == 204
    assert (await client.delete(url, headers=moderator.headers)).status_code == 204  # nothing
    assert await vote_state(client, target["id"]) == (1, 1, 0, 1)
    cid = target["id"]
    assert rules.after == [(cid, -1, 0, -3), (cid, 1, 0, -2), (cid, 1, -1, 4), (cid, 0, 1, 1)]


async def _clients(stack: AsyncExitStack, app: Any, count: int) -> list[httpx.AsyncClient]:
    return [
        await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        )
        for _ in range(count)
    ]


async def test_many_users_voting_at_once_give_exact_counts(client, new_user):
    author = await new_user(client)
    voters = [await new_user(client) for _ in range(16)]
    post = await make_post(client, author)
    target = await comment(client, author, post["id"])
    url = f"/comments/{target['id']}/vote"
    async with AsyncExitStack() as stack:
        https = await _clients(stack, client.app, len(voters))
        cast = await asyncio.gather(
            *(
                http.put(url, json={"dir": 1 if i % 4 else -1}, headers=voter.headers)
                for i, (http, voter) in enumerate(zip(https, voters, strict=True))
            )
        )
        assert [r.status_code for r in cast] == [201] * 16
        assert await vote_state(client, target["id"]) == (8, 12, 4, 16)
        # Half of them change their minds at once, the other half take their votes back.
        changed = await asyncio.gather(
            *(
                http.put(url, json={"dir": -1 if i % 4 else 1}, headers=voter.headers)
                if i % 2
                else http.delete(url, headers=voter.headers)
                for i, (http, voter) in enumerate(zip(https, voters, strict=True))
            )
        )
    assert {r.status_code for r in changed} <= {201, 204}
    # Odd voters flipped (i % 4 == 1 or 3: all were up, now down); even ones removed theirs.
    assert await vote_state(client, target["id"]) == (-8, 0, 8, 8)


async def test_one_user_racing_themselves_counts_once(client, new_user):
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    target = await comment(client, author, post["id"])
    url = f"/comments/{target['id']}/vote"
    async with AsyncExitStack() as stack:
        https = await _clients(stack, client.app, 10)
        puts = await asyncio.gather(*(http.put(url, headers=voter.headers) for http in https))
        assert Counter(r.status_code for r in puts) == {201: 1, 200: 9}
        assert await vote_state(client, target["id"]) == (1, 1, 0, 1)
        mixed = await asyncio.gather(
            *(
                http.put(url, json={"dir": -1 if i % 2 else 1}, headers=voter.headers)
                for i, http in enumerate(https)
            )
        )
        assert {r.status_code for r in mixed} <= {200, 201}
        state = await vote_state(client, target["id"])
        assert state in {(1, 1, 0, 1), (-1, 0, 1, 1)}
        removals = await asyncio.gather(
            *(http.delete(url, headers=voter.headers) for http in https)
        )
    assert {r.status_code for r in removals} == {204}
    assert await vote_state(client, target["id"]) == (0, 0, 0, 0)


async def test_concurrent_replies_count_exactly(client, new_user):
    author = await new_user(client)
    repliers = [await new_user(client) for _ in range(12)]
    post = await make_post(client, author)
    parent = await comment(client, author, post["id"])
    async with AsyncExitStack() as stack:
        https = await _clients(stack, client.app, len(repliers))
        replies = await asyncio.gather(
            *(
                http.post(
                    f"/posts/{post['id']}/comments",
                    json={"body": f"reply {i}", "parent_id": parent["id"]},
                    headers=user.headers,
                )
                for i, (http, user) in enumerate(zip(https, repliers, strict=True))
            )
        )
    assert [r.status_code for r in replies] == [201] * 12
    assert await counts(client, post["id"]) == {"comment_count": 13, "rows": 13}
    fetched = (await client.get(f"/comments/{parent['id']}", headers=author.headers)).json()
    assert fetched["reply_count"] == 12


async def test_replies_racing_their_parents_deletion(client, new_user):
    """Whatever the interleaving: a reply that lands first keeps its parent as a placeholder;
    a reply that comes second is refused and leaves nothing behind (409 PARENT_DELETED, or
    422 INVALID_PARENT when the parent was already removed outright as it was looked up). No
    reply is ever left dangling, and every counter matches a recount."""
    author = await new_user(client)
    repliers = [await new_user(client) for _ in range(6)]
    post = await make_post(client, author)
    for _round in range(4):
        parent = await comment(client, author, post["id"])
        async with AsyncExitStack() as stack:
            https = await _clients(stack, client.app, len(repliers) + 1)
            writes = [
                https[i].post(
                    f"/posts/{post['id']}/comments",
                    json={"body": "late?", "parent_id": parent["id"]},
                    headers=user.headers,
                )
                for i, user in enumerate(repliers)
            ]
            writes.insert(3, https[-1].delete(f"/comments/{parent['id']}", headers=author.headers))
            answers = await asyncio.gather(*writes)
        deletion = answers.pop(3)
        assert deletion.status_code == 204
        statuses = Counter(r.status_code for r in answers)
        assert set(statuses) <= {201, 409, 422}
        refusals = {r.json()["code"] for r in answers if r.status_code != 201}
        assert refusals <= {"PARENT_DELETED", "INVALID_PARENT"}
        landed = statuses[201]
        left = await client.get(f"/comments/{parent['id']}", headers=author.headers)
        if landed:
            placeholder = left.json()
            assert placeholder["deleted"] is True
            assert placeholder["reply_count"] == landed
        else:
            assert left.status_code == 404  # removed outright: it had no replies
        await counts(client, post["id"])
    async with client.kit.db.sessionmaker() as session:
        orphans = await session.scalar(
            select(func.count())
            .select_from(Comment)
            .where(
                Comment.parent_id.is_not(None),
                ~Comment.parent_id.in_(select(Comment.id).scalar_subquery()),
            )
        )
    assert orphans == 0


async def test_concurrent_deletes_of_one_comment(client, new_user):
    user = await new_user(client)
    post = await make_post(client, user)
    target = await comment(client, user, post["id"])
    async with AsyncExitStack() as stack:
        https = await _clients(stack, client.app, 6)
        answers = await asyncio.gather(
            *(http.delete(f"/comments/{target['id']}", headers=user.headers) for http in https)
        )
    assert Counter(r.status_code for r in answers) == {204: 1, 404: 5}
    assert await counts(client, post["id"]) == {"comment_count": 0, "rows": 0}


async def _delete_account(client: Any, user: TestUser) -> None:
    response = await client.request(
        "DELETE", "/users/me", json={"current_password": user.password}, headers=user.headers
    )
    assert response.status_code == 204, response.text


@pytest.mark.parametrize("mode", ["delete", "anonymize"])
async def test_deleting_an_account(make_client, new_user, mode):
    client = await make_client(account_deletion_posts=mode)
    leaving, staying = await new_user(client), await new_user(client)
    theirs = await make_post(client, staying)
    own = await make_post(client, leaving)
    answered = await comment(client, leaving, theirs["id"], "answered")
    reply = await comment(client, staying, theirs["id"], "reply", parent_id=answered["id"])
    lonely = await comment(client, leaving, theirs["id"], "lonely")
    chain = await comment(client, leaving, theirs["id"], "chain")
    await comment(client, leaving, theirs["id"], "self-reply", parent_id=chain["id"])
    liked = await comment(client, staying, theirs["id"], "liked")
    await client.put(f"/comments/{liked['id']}/vote", json={"dir": -1}, headers=leaving.headers)
    await comment(client, staying, own["id"], "on their post")

    await _delete_account(client, leaving)
    assert await vote_state(client, liked["id"]) == (0, 0, 0, 0)
    page = (
        await client.get(
            f"/posts/{theirs['id']}/comments", params={"sort": "new"}, headers=staying.headers
        )
    ).json()
    by_id = {c["id"]: c for c in page}
    if mode == "anonymize":
        assert by_id[answered["id"]]["body"] == "answered"
        assert by_id[answered["id"]]["author"] is None
        assert by_id[answered["id"]]["deleted"] is False
        assert by_id[lonely["id"]]["author"] is None
        assert by_id[chain["id"]]["replies"][0]["body"] == "self-reply"
        assert await counts(client, theirs["id"]) == {"comment_count": 6, "rows": 6}
    else:
        assert by_id[answered["id"]]["deleted"] is True
        assert by_id[answered["id"]]["body"] is None
        assert [r["id"] for r in by_id[answered["id"]]["replies"]] == [reply["id"]]
        # Without replies from others, they are gone: the self-reply first, then its parent.
        assert set(by_id) == {answered["id"], liked["id"]}
        assert await counts(client, theirs["id"]) == {"comment_count": 2, "rows": 3}
        assert (await client.get(f"/posts/{own['id']}", headers=staying.headers)).status_code == 404
