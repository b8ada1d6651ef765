"""Races on PostgreSQL through several server worker processes (gunicorn, uvicorn workers).

Many clients vote, unvote, edit and delete the same posts at once. Whatever the interleaving:
no 5xx, only the documented statuses, every post's vote total equals the sum of its votes, no
vote outlives its post or its user, and identical concurrent votes by one user count once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from postkit.migrations import upgrade
from tests.support.api import TestUser, register
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.support.ports import free_port
from tests.support.servers import LiveProcess, gunicorn_command, serve, server_env

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

WORKERS = 3
OWNERS = 3
POSTS_PER_OWNER = 4
VOTERS = 12
OPERATIONS = 700
CONCURRENCY = 40

# The statuses each operation may answer, whatever the interleaving.
ALLOWED = {
    "vote": {201, 404, 409},  # POST /vote dir 1: cast, post gone, already voted
    "unvote": {201, 204, 404},  # POST /vote dir 0: removed, post gone or no vote
    "put": {200, 201, 404},
    "delete_vote": {204, 404},
    "edit": {200, 404},
    "delete_post": {204, 404},
    "read": {200, 404},
}


@pytest.fixture(scope="module")
def race_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveProcess, str]]:
    require_postgres("races through several worker processes")
    url = create_postgres_database("postkit_races")
    try:
        upgrade(url)
        port = free_port()
        env = server_env(
            url, database_pool_size=4, database_max_overflow=4, login_max_failures=10_000
        )
        log_dir = tmp_path_factory.mktemp("races")
        with serve(gunicorn_command(port, WORKERS), env=env, log_dir=log_dir, port=port) as server:
            yield server, url
    finally:
        drop_postgres_database(url)


async def _accounts(http: httpx.AsyncClient, count: int) -> list[TestUser]:
    return list(await asyncio.gather(*(register(http) for _ in range(count))))


async def _create_posts(http: httpx.AsyncClient, owner: TestUser, count: int) -> list[int]:
    ids = []
    for i in range(count):
        response = await http.post(
            "/posts", json={"title": f"race {i}", "content": "c"}, headers=owner.headers
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def _integrity(url: str) -> dict[str, object]:
    connection = await asyncpg.connect(url)
    try:
        wrong_counts = await connection.fetch(
            """
            SELECT p.id, p.vote_count, coalesce(sum(v.weight), 0) AS total
            FROM postkit_posts p LEFT JOIN postkit_votes v ON v.post_id = p.id
            GROUP BY p.id HAVING p.vote_count <> coalesce(sum(v.weight), 0)
            """
        )
        orphans = await connection.fetchval(
            """
            SELECT count(*) FROM postkit_votes v
            WHERE NOT EXISTS (SELECT 1 FROM postkit_posts p WHERE p.id = v.post_id)
               OR NOT EXISTS (SELECT 1 FROM postkit_users u WHERE u.id = v.user_id)
            """
        )
        totals = {
            row["id"]: row["vote_count"]
            for row in await connection.fetch("SELECT id, vote_count FROM postkit_posts")
        }
        return {
            "wrong_counts": [tuple(r) for r in wrong_counts],
            "orphans": orphans,
            "totals": totals,
        }
    finally:
        await connection.close()


async def _burst(calls: list[object]) -> Counter[int]:
    responses = await asyncio.gather(*calls)  # type: ignore[call-overload]
    return Counter(r.status_code for r in responses)


def test_identical_concurrent_votes_count_once(race_server: tuple[LiveProcess, str]) -> None:
    server, url = race_server

    async def scenario() -> None:
        # Idle connections are not reused past a second: the server closes them after its
        # keep-alive (5 s), and a request sent as it does so fails with ReadError.
        limits = httpx.Limits(keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            owner, voter = await _accounts(http, 2)
            (post,) = await _create_posts(http, owner, 1)
            vote = {"post_id": post, "dir": 1}
            unvote = {"post_id": post, "dir": 0}
            h = voter.headers
            n = 12
            statuses = await _burst([http.post("/vote", json=vote, headers=h) for _ in range(n)])
            assert statuses == Counter({201: 1, 409: n - 1}), statuses
            statuses = await _burst([http.post("/vote", json=unvote, headers=h) for _ in range(n)])
            assert sum(statuses[s] for s in (201, 204)) == 1, statuses
            assert statuses[404] == n - 1, statuses
            statuses = await _burst([http.put(f"/posts/{post}/vote", headers=h) for _ in range(n)])
            assert statuses == Counter({201: 1, 200: n - 1}), statuses
            statuses = await _burst(
                [http.delete(f"/posts/{post}/vote", headers=h) for _ in range(n)]
            )
            assert statuses == Counter({204: n}), statuses
            # Many users at once: an exact count.
            voters = await _accounts(http, 10)
            statuses = await _burst(
                [http.put(f"/posts/{post}/vote", headers=v.headers) for v in voters]
            )
            assert statuses == Counter({201: 10}), statuses
            read = await http.get(f"/posts/{post}", headers=h)
            assert read.json()["votes"] == 10

    asyncio.run(scenario())
    state = asyncio.run(_integrity(url))
    assert state["wrong_counts"] == [], state
    assert state["orphans"] == 0, state
    assert "Traceback" not in server.log, server.log[-6000:]


def test_votes_edits_and_deletes_at_once_keep_exact_counts(
    race_server: tuple[LiveProcess, str],
) -> None:
    server, url = race_server
    rng = random.Random(20261126)
    outcomes: dict[str, Counter[int]] = {kind: Counter() for kind in ALLOWED}

    async def scenario() -> tuple[list[int], set[int], dict[int, int]]:
        async with httpx.AsyncClient(
            base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=CONCURRENCY)
        ) as http:
            owners = await _accounts(http, OWNERS)
            voters = await _accounts(http, VOTERS)
            posts_by_owner = {o.id: await _create_posts(http, o, POSTS_PER_OWNER) for o in owners}
            posts = [p for ids in posts_by_owner.values() for p in ids]
            hot = posts[:4]  # most of the traffic lands on a few posts
            doomed = {ids[0] for ids in posts_by_owner.values()}  # one post per owner goes
            owner_of = {p: o for o in owners for p in posts_by_owner[o.id]}

            plan: list[tuple[str, TestUser, int]] = []
            for i in range(OPERATIONS):
                post = rng.choice(hot) if rng.random() < 0.7 else rng.choice(posts)
                roll = rng.random()
                if i in {OPERATIONS // 3, OPERATIONS // 2, (2 * OPERATIONS) // 3}:
                    for victim in doomed:
                        plan.append(("delete_post", owner_of[victim], victim))
                if roll < 0.08:
                    plan.append(("edit", owner_of[post], post))
                elif roll < 0.12:
                    plan.append(("read", rng.choice(voters), post))
                else:
                    kind = rng.choice(["vote", "unvote", "put", "delete_vote"])
                    plan.append((kind, rng.choice(voters), post))

            gate = asyncio.Semaphore(CONCURRENCY)

            async def run(kind: str, account: TestUser, post: int, n: int) -> None:
                h = account.headers
                async with gate:
                    if kind == "vote":
                        r = await http.post("/vote", json={"post_id": post, "dir": 1}, headers=h)
                    elif kind == "unvote":
                        r = await http.post("/vote", json={"post_id": post, "dir": 0}, headers=h)
                    elif kind == "put":
                        r = await http.put(f"/posts/{post}/vote", headers=h)
                    elif kind == "delete_vote":
                        r = await http.delete(f"/posts/{post}/vote", headers=h)
                    elif kind == "edit":
                        r = await http.patch(
                            f"/posts/{post}", json={"title": f"edit {n}"}, headers=h
                        )
                    elif kind == "delete_post":
                        r = await http.delete(f"/posts/{post}", headers=h)
                    else:
                        r = await http.get(f"/posts/{post}", headers=h)
                outcomes[kind][r.status_code] += 1

            await asyncio.gather(*(run(k, a, p, n) for n, (k, a, p) in enumerate(plan)))
            # Read every post back through the API: totals match what the database holds.
            api_votes: dict[int, int] = {}
            for post in posts:
                r = await http.get(f"/posts/{post}", headers=voters[0].headers)
                assert r.status_code in (200, 404), r.text
                if r.status_code == 200:
                    api_votes[post] = r.json()["votes"]
            return posts, doomed, api_votes

    posts, doomed, api_votes = asyncio.run(scenario())
    for kind, statuses in outcomes.items():
        unexpected = set(statuses) - ALLOWED[kind]
        assert not unexpected, (kind, statuses, server.log[-6000:])
    assert outcomes["delete_post"][204] == len(doomed), outcomes["delete_post"]
    assert sum(outcomes["vote"].values()) > 50  # the run really happened
    state = asyncio.run(_integrity(url))
    assert state["wrong_counts"] == [], state
    assert state["orphans"] == 0, state
    totals = state["totals"]
    assert isinstance(totals, dict)
    assert not doomed & set(totals), "deleted posts are gone"
    assert api_votes == {p: totals[p] for p in posts if p not in doomed}
    assert "Traceback" not in server.log, server.log[-6000:]


def test_vote_flips_racing_a_delete_never_deadlock(race_server: tuple[LiveProcess, str]) -> None:
    """Votes switching direction while the post, or the comment voted on, is deleted: a vote
    locks the post's (or the comment's) row before its own, in the order a delete's cascade
    takes them, so neither side deadlocks (once a 500 from PostgreSQL's deadlock detector)."""
    server, url = race_server
    flips = [{"dir": -1}, {"dir": 1}, {"dir": -1}]
    statuses: dict[str, Counter[int]] = {"vote": Counter(), "delete": Counter()}

    async def flip(http: httpx.AsyncClient, path: str, voter: TestUser) -> None:
        for body in flips:
            r = await http.put(path, json=body, headers=voter.headers)
            statuses["vote"][r.status_code] += 1

    async def delete_soon(
        http: httpx.AsyncClient, path: str, owner: TestUser, delay: float
    ) -> None:
        await asyncio.sleep(delay)
        r = await http.delete(path, headers=owner.headers)
        statuses["delete"][r.status_code] += 1

    async def scenario() -> None:
        limits = httpx.Limits(keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            owner, *voters = await _accounts(http, 9)
            for round_ in range(8):
                (post,) = await _create_posts(http, owner, 1)
                comment = await http.post(
                    f"/posts/{post}/comments", json={"body": "c"}, headers=owner.headers
                )
                assert comment.status_code == 201, comment.text
                cid = comment.json()["id"]
                # Every voter has a vote to switch on the post and on the comment.
                for v in voters:
                    assert (await http.put(f"/posts/{post}/vote", headers=v.headers)).is_success
                    assert (await http.put(f"/comments/{cid}/vote", headers=v.headers)).is_success
                target = ["post", "comment", "post-of-comment"][round_ % 3]
                vote_path = f"/posts/{post}/vote" if target == "post" else f"/comments/{cid}/vote"
                doomed = f"/comments/{cid}" if target == "comment" else f"/posts/{post}"
                await asyncio.gather(
                    *(flip(http, vote_path, v) for v in voters),
                    delete_soon(http, doomed, owner, 0.005 * (round_ % 4)),
                )

    try:
        asyncio.run(scenario())
    except httpx.TransportError as exc:  # a worker that failed mid-request: say why
        raise AssertionError(server.log[-6000:]) from exc
    assert set(statuses["vote"]) <= {200, 201, 404}, (statuses, server.log[-6000:])
    assert statuses["delete"] == Counter({204: 8}), (statuses, server.log[-6000:])
    assert "Traceback" not in server.log, server.log[-6000:]
    state = asyncio.run(_integrity(url))
    assert state["wrong_counts"] == [], state
    assert state["orphans"] == 0, state
