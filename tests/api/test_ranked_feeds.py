"""Ranked feeds through HTTP on SQLite and PostgreSQL: sort=hot, best, controversial and top
with a time window; their order (ties broken by id), cursor paging without duplicates or skips,
cursors refused across sorts, search combined with a sort, and the rank_score hook."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, update

from postkit import hookimpl
from postkit.models import Post
from postkit.ranking import rank_scores
from tests.support.api import make_post
from tests.support.examples import load_example

RANKED = ("hot", "best", "controversial")


def created(post: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(post["created_at"].replace("Z", "+00:00"))


def expected_order(posts: list[dict[str, Any]], sort: str) -> list[int]:
    """Post ids in ``sort`` order, computed from what the API shows of each post."""

    def key(post: dict[str, Any]) -> tuple[float, int]:
        if sort == "top":
            return post["score"], post["id"]
        ranks = rank_scores(
            score=post["score"],
            upvotes=post["upvotes"],
            downvotes=post["downvotes"],
            created_at=created(post),
        )
        return ranks[f"{sort}_rank"], post["id"]

    return [post["id"] for post in sorted(posts, key=key, reverse=True)]


async def all_pages(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every post of a feed, page by page through the cursors; no page may repeat a post."""
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = await client.get("/posts", params=query, headers=headers)
        assert response.status_code == 200, response.text
        seen.extend(response.json())
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            break
    ids = [post["id"] for post in seen]
    assert len(ids) == len(set(ids)), ids
    return seen


@pytest.fixture
async def voted_posts(client, new_user):
    """Eight posts with varied votes, including ties: three with no votes at all, two with one
    up-vote each, and a split post."""
    author = await new_user(client)
    voters = [await new_user(client) for _ in range(5)]
    posts = [await make_post(client, author, title=f"post {n}") for n in range(8)]
    plans = {
        0: [1, 1, 1, -1],  # well liked
        1: [1, -1, 1, -1],  # evenly split
        2: [-1, -1, -1],  # disliked
        3: [1],
        4: [1],  # ties with 3 on every rank but hot (created later)
        5: [1, 1, 1, 1, 1],
    }
    for index, directions in plans.items():
        for voter, direction in zip(voters, directions, strict=False):
            response = await client.put(
                f"/posts/{posts[index]['id']}/vote", json={"dir": direction}, headers=voter.headers
            )
            assert response.status_code == 201
    listed = await all_pages(client, author.headers, limit=50)
    return author, listed


@pytest.mark.parametrize("sort", ["new", "top", *RANKED])
async def test_each_sort_orders_and_pages_exactly(client, voted_posts, sort):
    author, posts = voted_posts
    assert len(posts) == 8
    expected = expected_order(posts, sort) if sort != "new" else [p["id"] for p in posts]
    for limit in (1, 3, 8):
        paged = await all_pages(client, author.headers, sort=sort, limit=limit)
        assert [post["id"] for post in paged] == expected


async def test_ranks_are_stored_as_ranking_computes_them(client, voted_posts):
    _, posts = voted_posts
    async with client.kit.db.sessionmaker() as session:
        stored = {
            row.id: row
            for row in await session.execute(
                select(Post.id, Post.hot_rank, Post.best_rank, Post.controversial_rank)
            )
        }
    for post in posts:
        ranks = rank_scores(
            score=post["score"],
            upvotes=post["upvotes"],
            downvotes=post["downvotes"],
            created_at=created(post),
        )
        row = stored[post["id"]]
        assert (row.hot_rank, row.best_rank, row.controversial_rank) == (
            ranks["hot_rank"],
            ranks["best_rank"],
            ranks["controversial_rank"],
        )
    by_id = {post["id"]: post for post in posts}
    split = next(p for p in posts if p["upvotes"] == 2 and p["downvotes"] == 2)
    assert stored[split["id"]].controversial_rank == max(
        stored[i].controversial_rank for i in by_id
    )


async def test_ties_are_broken_by_id(client, voted_posts):
    author, posts = voted_posts
    unvoted = sorted((p["id"] for p in posts if p["upvotes"] + p["downvotes"] == 0), reverse=True)
    assert len(unvoted) == 2
    best = [p["id"] for p in await all_pages(client, author.headers, sort="best", limit=2)]
    # No votes: best 0, like the disliked post (Wilson's lower bound of 0 of 3 is 0).
    disliked = next(p["id"] for p in posts if p["downvotes"] == 3)
    zero_best = sorted([*unvoted, disliked], reverse=True)
    assert best[-3:] == zero_best
    controversial = [
        p["id"] for p in await all_pages(client, author.headers, sort="controversial", limit=1)
    ]
    others = sorted((p["id"] for p in posts if not (p["upvotes"] and p["downvotes"])), reverse=True)
    assert controversial[-len(others) :] == others


async def test_a_cursor_of_another_sort_is_refused(client, voted_posts):
    author, _ = voted_posts
    cursors = {}
    for sort, extra in (
        ("new", {}),
        ("top", {}),
        ("hot", {}),
        ("best", {}),
        ("top", {"t": "week"}),
    ):
        response = await client.get(
            "/posts", params={"sort": sort, "limit": 1, **extra}, headers=author.headers
        )
        cursors[(sort, extra.get("t", "all"))] = response.headers["X-Next-Cursor"]
    for (sort, window), cursor in cursors.items():
        for other_sort, other_window in cursors:
            if (other_sort, other_window) == (sort, window):
                continue
            params = {"sort": other_sort, "cursor": cursor}
            if other_window != "all":
                params["t"] = other_window
            refused = await client.get("/posts", params=params, headers=author.headers)
            assert refused.status_code == 400, (sort, window, other_sort, other_window)
            assert refused.json()["code"] == "INVALID_CURSOR"


@pytest.mark.parametrize(
    "key", ["NaN", "Infinity", "-Infinity", "1e400", "1", '"0.5"', "null", "true"]
)
async def test_forged_rank_cursors_are_refused(client, new_user, key):
    user = await new_user(client)
    raw = '{"s":"hot","k":' + key + ',"i":1}'
    cursor = base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()
    response = await client.get(
        "/posts", params={"sort": "hot", "cursor": cursor}, headers=user.headers
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_CURSOR"


async def test_float_cursor_keys_round_trip_exactly(client, new_user):
    """A rank with every bit significant pages on from exactly where it stopped."""
    user = await new_user(client)
    ids = [(await make_post(client, user))["id"] for _ in range(3)]
    value = 0.1 + 0.2  # 0.30000000000000004
    async with client.kit.db.sessionmaker() as session:
        await session.execute(update(Post).where(Post.id.in_(ids)).values(best_rank=value))
        await session.commit()
    first = await client.get("/posts", params={"sort": "best", "limit": 1}, headers=user.headers)
    cursor = first.headers["X-Next-Cursor"]
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert payload["k"] == value
    rest = await all_pages(client, user.headers, sort="best", limit=1, cursor=cursor)
    assert [first.json()[0]["id"], *(p["id"] for p in rest)] == sorted(ids, reverse=True)


async def test_top_with_each_window(client, new_user):
    author = await new_user(client)
    voters = [await new_user(client) for _ in range(4)]
    now = datetime.now(timezone.utc)
    ages = {"hour": timedelta(hours=1), "days": timedelta(days=3), "weeks": timedelta(days=20)}
    ages |= {"months": timedelta(days=200), "years": timedelta(days=800)}
    ids: dict[str, int] = {}
    for score, name in enumerate(ages):
        post = await make_post(client, author, title=name)
        ids[name] = post["id"]
        for voter in voters[:score]:
            await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    async with client.kit.db.sessionmaker() as session:
        for name, age in ages.items():
            await session.execute(
                update(Post).where(Post.id == ids[name]).values(created_at=now - age)
            )
        await session.commit()
    # The oldest has the most votes: without a window it comes first.
    windows = {
        "day": ["hour"],
        "week": ["days", "hour"],
        "month": ["weeks", "days", "hour"],
        "year": ["months", "weeks", "days", "hour"],
        "all": ["years", "months", "weeks", "days", "hour"],
    }
    for window, names in windows.items():
        for limit in (1, 2, 10):
            paged = await all_pages(client, author.headers, sort="top", t=window, limit=limit)
            assert [p["id"] for p in paged] == [ids[n] for n in names], window
    default = await all_pages(client, author.headers, sort="top")
    assert [p["id"] for p in default] == [ids[n] for n in windows["all"]]


@pytest.mark.parametrize("sort", ["new", "hot", "best", "controversial"])
async def test_a_window_needs_sort_top(client, new_user, sort):
    user = await new_user(client)
    response = await client.get("/posts", params={"sort": sort, "t": "day"}, headers=user.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "sort=top" in response.text


@pytest.mark.parametrize("params", [{"sort": "rising"}, {"sort": "top", "t": "decade"}])
async def test_unknown_sorts_and_windows_are_422(client, new_user, params):
    user = await new_user(client)
    response = await client.get("/posts", params=params, headers=user.headers)
    assert response.status_code == 422


@pytest.mark.parametrize("sort", ["top", *RANKED])
async def test_search_with_a_sort(client, voted_posts, new_user, sort):
    author, _posts = voted_posts
    voter = await new_user(client)
    extra = [await make_post(client, author, title=f"needle {n}") for n in range(3)]
    await client.put(f"/posts/{extra[0]['id']}/vote", json={"dir": -1}, headers=voter.headers)
    await client.put(f"/posts/{extra[2]['id']}/vote", headers=voter.headers)
    matches = [
        p for p in await all_pages(client, author.headers, limit=50) if "needle" in p["title"]
    ]
    found = await all_pages(client, author.headers, sort=sort, search="NEEDLE", limit=1)
    assert [p["id"] for p in found] == expected_order(matches, sort)


async def test_drafts_stay_out_of_ranked_feeds_for_others(client, new_user):
    author, reader = await new_user(client), await new_user(client)
    draft = await make_post(client, author, published=False)
    for sort in ("top", *RANKED):
        for who, visible in ((author, True), (reader, False)):
            listed = await all_pages(client, who.headers, sort=sort)
            assert (draft["id"] in [p["id"] for p in listed]) is visible


# --- rank_score ---------------------------------------------------------------------------------


class ScoreIsHot:
    """Hot is the plain score; records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, int, int]] = []

    @hookimpl
    def rank_score(
        self, rank: str, item: Post, score: int, upvotes: int, downvotes: int
    ) -> float | None:
        self.asked.append((rank, score, upvotes, downvotes))
        return float(score) if rank == "hot" else None


async def test_rank_score_replaces_one_rank(make_client, new_user):
    plugin = ScoreIsHot()
    client = await make_client(plugins=[plugin])
    author, voter, other = await new_user(client), await new_user(client), await new_user(client)
    older = await make_post(client, author)
    newer = await make_post(client, author)
    assert plugin.asked == [("hot", 0, 0, 0), ("best", 0, 0, 0), ("controversial", 0, 0, 0)] * 2
    await client.put(f"/posts/{older['id']}/vote", headers=voter.headers)
    await client.put(f"/posts/{older['id']}/vote", json={"dir": -1}, headers=other.headers)
    await client.put(f"/posts/{newer['id']}/vote", json={"dir": -1}, headers=voter.headers)
    assert plugin.asked[-3:] == [("hot", -1, 0, 1), ("best", -1, 0, 1), ("controversial", -1, 0, 1)]
    async with client.kit.db.sessionmaker() as session:
        rows = {
            row.id: row
            for row in await session.execute(
                select(Post.id, Post.hot_rank, Post.best_rank, Post.controversial_rank)
            )
        }
    assert rows[older["id"]].hot_rank == 0.0
    assert rows[newer["id"]].hot_rank == -1.0
    # The other ranks stay postkit's own.
    assert rows[older["id"]].controversial_rank == 2.0
    hot = await all_pages(client, author.headers, sort="hot")
    assert [p["id"] for p in hot] == [older["id"], newer["id"]]


async def test_the_example_ranking_plugin(make_client, new_user):
    plugin = load_example("plugin_ranking").SlowHot()
    client = await make_client(plugins=[plugin])
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    for _ in range(2):
        await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    async with client.kit.db.sessionmaker() as session:
        hot, best = (
            await session.execute(
                select(Post.hot_rank, Post.best_rank).where(Post.id == post["id"])
            )
        ).one()
    seconds = (created(post) - datetime(2025, 1, 1, tzinfo=timezone.utc)).total_seconds()
    assert hot == round(seconds / 86_400, 7)  # one vote: log10(1) is 0, the age term alone
    assert hot != rank_scores(score=1, upvotes=1, downvotes=0, created_at=created(post))["hot_rank"]
    assert (
        best == rank_scores(score=1, upvotes=1, downvotes=0, created_at=created(post))["best_rank"]
    )


class BrokenRank:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    @hookimpl
    def rank_score(self, rank: str) -> Any:
        return self.answer


@pytest.mark.parametrize("answer", ["high", float("nan"), float("inf"), True])
async def test_a_bad_rank_score_answer_is_a_plugin_error(make_client, new_user, answer):
    client = await make_client(plugins=[BrokenRank(answer)], raise_app_exceptions=False)
    user = await new_user(client)
    response = await client.post(
        "/posts", json={"title": "t", "content": "c"}, headers=user.headers
    )
    assert response.status_code == 500
    assert (await client.get("/posts", headers=user.headers)).json() == []
