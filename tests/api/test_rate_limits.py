"""Rate limits through HTTP, on SQLite and PostgreSQL: each limited action answers 429
``RATE_LIMITED`` with ``Retry-After`` and the IETF ``RateLimit`` fields past its limit, and not
before; counters are per address or per account as documented, hold under a prefix mount, are
shared by kits on one database (workers) and not by kits on different ones."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import text

from postkit import PostKit, PostKitSettings
from postkit.migrations import upgrade
from postkit.ratelimit import DRAFT, address_partition, parse_rate
from tests.support.api import TEST_PASSWORD, KitClient, make_post
from tests.support.api import TestUser as User
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.support.ports import free_port
from tests.support.servers import gunicorn_command, serve, server_env

MakeClient = Callable[..., Awaitable[KitClient]]
NewUser = Callable[..., Awaitable[User]]

ITEM = re.compile(r'^"(?P<name>[a-z_]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')
POLICY = re.compile(r'^"(?P<name>[a-z_]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')


def limit_fields(response: httpx.Response) -> dict[str, int | str]:
    """The parsed ``RateLimit`` and ``RateLimit-Policy`` fields of a response."""
    item = ITEM.match(response.headers["RateLimit"])
    policy = POLICY.match(response.headers["RateLimit-Policy"])
    assert item is not None, response.headers["RateLimit"]
    assert policy is not None, response.headers["RateLimit-Policy"]
    assert item["name"] == policy["name"]
    return {
        "name": item["name"],
        "remaining": int(item["r"]),
        "reset": int(item["t"]),
        "quota": int(policy["q"]),
        "window": int(policy["w"]),
    }


def assert_limited(response: httpx.Response, name: str, *, quota: int, window: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "RATE_LIMITED"
    assert name in response.json()["detail"]
    fields = limit_fields(response)
    assert fields == {
        "name": name,
        "remaining": 0,
        "reset": fields["reset"],
        "quota": quota,
        "window": window,
    }
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert retry_after == fields["reset"]


def assert_counted(response: httpx.Response, name: str, *, remaining: int, quota: int) -> None:
    assert response.status_code < 400, response.text
    fields = limit_fields(response)
    assert (fields["name"], fields["remaining"], fields["quota"]) == (name, remaining, quota)
    assert 1 <= int(fields["reset"]) <= int(fields["window"])
    assert "Retry-After" not in response.headers


async def sql(kit: PostKit, statement: str) -> list[tuple[Any, ...]]:
    """Rows of ``statement`` read through the kit's own engine (inside the test's loop)."""
    async with kit.db.engine.connect() as connection:
        return [tuple(row) for row in (await connection.execute(text(statement))).all()]


def registration(n: int | str) -> dict[str, str]:
    suffix = f"{n}_{uuid.uuid4().hex[:6]}"
    return {"email": f"r{suffix}@example.com", "username": f"r{suffix}", "password": TEST_PASSWORD}


# --- Each limited action --------------------------------------------------------------------


async def test_registration_is_limited_per_address(make_client: MakeClient) -> None:
    client = await make_client(rate_limit_register="3/hour")
    for n in range(3):
        created = await client.post("/users", json=registration(n))
        assert created.status_code == 201, created.text
        assert_counted(created, "register", remaining=2 - n, quota=3)
    refused = await client.post("/users", json=registration("x"))
    assert_limited(refused, "register", quota=3, window=3600)
    # The refused registration did not happen.
    assert await sql(client.kit, "SELECT count(*) FROM postkit_users") == [(3,)]


async def test_login_is_limited_per_address_even_when_the_password_is_right(
    make_client: MakeClient, new_user: NewUser
) -> None:
    client = await make_client(rate_limit_login="3/minute")
    user = await new_user(client)  # one login
    form = {"username": user.email, "password": user.password}
    for remaining in (1, 0):
        answer = await client.post("/login", data=form)
        assert answer.status_code == 200, answer.text
        assert_counted(answer, "login", remaining=remaining, quota=3)
    assert_limited(await client.post("/login", data=form), "login", quota=3, window=60)


async def test_login_failure_throttle_still_answers_its_own_code(
    make_client: MakeClient, new_user: NewUser
) -> None:
    """The rate limit sits beside the failure throttle: failures still hit TOO_MANY_ATTEMPTS."""
    client = await make_client(login_max_failures=2, rate_limit_login="50/minute")
    user = await new_user(client)
    wrong = {"username": user.email, "password": "wrong password!"}
    codes = [(await client.post("/login", data=wrong)).json()["code"] for _ in range(3)]
    assert codes == ["INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "TOO_MANY_ATTEMPTS"]


async def test_token_refresh_is_limited_per_address(
    make_client: MakeClient, new_user: NewUser
) -> None:
    client = await make_client(rate_limit_token_refresh="2/minute")
    user = await new_user(client)
    token = user.refresh_token
    for remaining in (1, 0):
        answer = await client.post("/token/refresh", json={"refresh_token": token})
        assert answer.status_code == 200, answer.text
        assert_counted(answer, "token_refresh", remaining=remaining, quota=2)
        token = answer.json()["refresh_token"]
    refused = await client.post("/token/refresh", json={"refresh_token": token})
    assert_limited(refused, "token_refresh", quota=2, window=60)
    # The refused refresh did not spend the token: it still works once the limit allows.
    assert await sql(
        client.kit,
        "SELECT count(*) FROM postkit_refresh_tokens WHERE used_at IS NULL",
    ) == [(1,)]


async def test_password_changes_are_limited_per_account_and_username_changes_are_not(
    make_client: MakeClient, new_user: NewUser
) -> None:
    client = await make_client(rate_limit_password_change="2/hour")
    user = await new_user(client)
    for n in range(4):
        renamed = await client.patch(
            "/users/me", json={"username": f"renamed_{n}_{user.id}"}, headers=user.headers
        )
        assert renamed.status_code == 200, renamed.text
        assert "RateLimit" not in renamed.headers
    password = user.password
    for remaining in (1, 0):
        new_password = f"new password {remaining} ok"
        changed = await client.patch(
            "/users/me",
            json={"password": new_password, "current_password": password},
            headers=user.headers,
        )
        assert changed.status_code == 200, changed.text
        assert_counted(changed, "password_change", remaining=remaining, quota=2)
        password = new_password
    refused = await client.patch(
        "/users/me",
        json={"password": "one more password", "current_password": password},
        headers=user.headers,
    )
    assert_limited(refused, "password_change", quota=2, window=3600)
    # Another account has its own budget.
    other = await new_user(client)
    changed = await client.patch(
        "/users/me",
        json={"password": "another new password", "current_password": other.password},
        headers=other.headers,
    )
    assert changed.status_code == 200, changed.text


async def test_a_revoked_token_spends_nothing_of_its_accounts_budgets(
    make_client: MakeClient, new_user: NewUser
) -> None:
    # A thief's token, once the owner logs out everywhere, must not lock the owner out.
    client = await make_client(rate_limit_password_change="2/hour", rate_limit_post_create="2/hour")
    user = await new_user(client)
    stolen = dict(user.headers)
    assert (await client.post("/logout/all", headers=user.headers)).status_code == 204
    for _ in range(5):
        refused = await client.patch(
            "/users/me",
            json={"current_password": "wrong", "password": "a new password 1"},
            headers=stolen,
        )
        assert refused.status_code == 401, refused.text
        created = await client.post("/posts", json={"title": "t", "content": "c"}, headers=stolen)
        assert created.status_code == 401, created.text
    login = await client.post("/login", data={"username": user.email, "password": user.password})
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    changed = await client.patch(
        "/users/me",
        json={"current_password": user.password, "password": "a new password 2"},
        headers=fresh,
    )
    assert changed.status_code == 200, changed.text
    assert limit_fields(changed)["remaining"] == 1  # the first of its two, the thief spent none
    for _ in range(2):
        posted = await client.post("/posts", json={"title": "t", "content": "c"}, headers=fresh)
        assert posted.status_code == 201, posted.text


async def test_post_creation_is_limited_per_account(
    make_client: MakeClient, new_user: NewUser
) -> None:
    client = await make_client(rate_limit_post_create="2/minute")
    alice, bob = await new_user(client), await new_user(client)
    for remaining in (1, 0):
        created = await client.post(
            "/posts", json={"title": "t", "content": "c"}, headers=alice.headers
        )
        assert created.status_code == 201, created.text
        assert_counted(created, "post_create", remaining=remaining, quota=2)
    refused = await client.post(
        "/posts", json={"title": "t", "content": "c"}, headers=alice.headers
    )
    assert_limited(refused, "post_create", quota=2, window=60)
    # One account's flood does not limit another account behind the same address.
    assert (await make_post(client, bob))["title"] == "A title"
    # Without a token the route answers 401, uncounted.
    anonymous = await client.post("/posts", json={"title": "t", "content": "c"})
    assert anonymous.status_code == 401
    assert "RateLimit" not in anonymous.headers


async def test_the_three_forms_of_voting_share_one_budget_per_account(
    make_client: MakeClient, new_user: NewUser
) -> None:
    client = await make_client(rate_limit_vote="3/minute")
    author, voter = await new_user(client), await new_user(client)
    first, second = (await make_post(client, author))["id"], (await make_post(client, author))["id"]
    cast = await client.post("/vote", json={"post_id": first, "dir": 1}, headers=voter.headers)
    assert_counted(cast, "vote", remaining=2, quota=3)
    put = await client.put(f"/posts/{second}/vote", headers=voter.headers)
    assert put.status_code == 201
    assert_counted(put, "vote", remaining=1, quota=3)
    deleted = await client.delete(f"/posts/{second}/vote", headers=voter.headers)
    assert deleted.status_code == 204
    assert_counted(deleted, "vote", remaining=0, quota=3)
    for refused in (
        await client.post("/vote", json={"post_id": first, "dir": 0}, headers=voter.headers),
        await client.put(f"/posts/{second}/vote", headers=voter.headers),
        await client.delete(f"/posts/{first}/vote", headers=voter.headers),
    ):
        assert_limited(refused, "vote", quota=3, window=60)
    # The refused unvote did not happen.
    post = await client.get(f"/posts/{first}", headers=voter.headers)
    assert post.json()["votes"] == 1
    # The author votes on their own budget.
    mine = await client.put(f"/posts/{first}/vote", headers=author.headers)
    assert mine.status_code == 201


async def test_searches_are_limited_and_plain_pages_are_not(
    make_client: MakeClient, new_user: NewUser
) -> None:
    client = await make_client(rate_limit_search="2/minute")
    user = await new_user(client)
    await make_post(client, user, title="needle")
    for _ in range(4):
        page = await client.get("/posts", headers=user.headers)
        assert page.status_code == 200
        assert "RateLimit" not in page.headers
    for remaining in (1, 0):
        found = await client.get("/posts", params={"search": "needle"}, headers=user.headers)
        assert found.status_code == 200
        assert [post["title"] for post in found.json()] == ["needle"]
        assert_counted(found, "search", remaining=remaining, quota=2)
    refused = await client.get("/posts", params={"search": "needle"}, headers=user.headers)
    assert_limited(refused, "search", quota=2, window=60)


async def test_anonymous_searches_count_against_the_address(
    make_client: MakeClient, new_user: NewUser
) -> None:
    client = await make_client(rate_limit_search="1/minute", public_reads=True)
    user = await new_user(client)
    assert (await client.get("/posts", params={"search": "xyz"})).status_code == 200
    assert_limited(
        await client.get("/posts", params={"search": "xyz"}), "search", quota=1, window=60
    )
    # A signed-in reader behind the same address has a budget of their own.
    mine = await client.get("/posts", params={"search": "xyz"}, headers=user.headers)
    assert_counted(mine, "search", remaining=0, quota=1)


# --- Keys, mounts, kits ---------------------------------------------------------------------


def test_ipv6_addresses_are_grouped_by_64() -> None:
    assert address_partition("2001:db8:1:2::1") == address_partition("2001:db8:1:2:ffff::9")
    assert address_partition("2001:db8:1:2::1") != address_partition("2001:db8:1:3::1")
    assert address_partition("::ffff:192.0.2.7") == address_partition("192.0.2.7")
    assert address_partition("192.0.2.7") != address_partition("192.0.2.8")
    assert address_partition("unknown") == "host:unknown"


async def test_ipv6_clients_in_one_64_share_a_registration_budget(
    settings_factory: Callable[..., PostKitSettings],
) -> None:
    kit = PostKit(settings_factory(rate_limit_register="1/hour"))
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router)

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with (
        app.router.lifespan_context(app),
        client("2001:db8:0:1::10") as first,
        client("2001:db8:0:1::99") as neighbour,
        client("2001:db8:0:2::10") as elsewhere,
    ):
        assert (await first.post("/users", json=registration(1))).status_code == 201
        refused = await neighbour.post("/users", json=registration(2))
        assert_limited(refused, "register", quota=1, window=3600)
        assert (await elsewhere.post("/users", json=registration(3))).status_code == 201


async def test_limits_hold_under_a_prefix_mount(make_client: MakeClient) -> None:
    client = await make_client(prefix="/api", rate_limit_register="1/hour")
    assert (await client.post("/api/users", json=registration(1))).status_code == 201
    assert_limited(
        await client.post("/api/users", json=registration(2)), "register", quota=1, window=3600
    )


async def test_two_kits_on_one_database_share_their_counters(make_client: MakeClient) -> None:
    """What several worker processes do: each has its own kit, all count in one table."""
    one = await make_client(rate_limit_register="3/hour")
    two = await make_client(rate_limit_register="3/hour")
    assert (await one.post("/users", json=registration(1))).status_code == 201
    assert (await two.post("/users", json=registration(2))).status_code == 201
    assert_counted(await one.post("/users", json=registration(3)), "register", remaining=0, quota=3)
    assert_limited(await two.post("/users", json=registration(4)), "register", quota=3, window=3600)


@pytest.fixture
def other_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A second migrated database, for a kit that must not see the first one's counters."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
        upgrade(url)
        yield url
        return
    url = create_postgres_database("postkit_other")
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


async def test_two_kits_on_two_databases_do_not_share_counters(
    make_client: MakeClient, other_database_url: str
) -> None:
    one = await make_client(rate_limit_register="1/hour")
    two = await make_client(rate_limit_register="1/hour", database_url=other_database_url)
    assert (await one.post("/users", json=registration(1))).status_code == 201
    assert (await two.post("/users", json=registration(2))).status_code == 201
    assert (await one.post("/users", json=registration(3))).status_code == 429
    assert (await two.post("/users", json=registration(4))).status_code == 429


async def test_concurrent_hits_are_counted_exactly_in_the_database(
    make_client: MakeClient,
) -> None:
    client = await make_client()

    @client.app.get(
        "/ping", dependencies=[client.kit.rate_limit("ping", rate="10/minute", per="address")]
    )
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    statuses = [
        r.status_code for r in await asyncio.gather(*(client.get("/ping") for _ in range(30)))
    ]
    assert sorted(statuses) == [200] * 10 + [429] * 20


# --- Host routes, settings, turning limits off ----------------------------------------------


async def test_a_host_route_reuses_a_limit_with_its_headers(make_client: MakeClient) -> None:
    client = await make_client()
    kit = client.kit
    kit.install_error_handlers(client.app)  # host routes answer {"detail", "code"} too

    @client.app.post(
        "/reports",
        dependencies=[kit.rate_limit("reports", rate="2/hour", per="address")],
        responses=kit.dependencies.rate_limit_responses("reports"),
    )
    async def report() -> dict[str, str]:
        return {"status": "filed"}

    for remaining in (1, 0):
        answer = await client.post("/reports")
        assert answer.json() == {"status": "filed"}
        assert_counted(answer, "reports", remaining=remaining, quota=2)
    assert_limited(await client.post("/reports"), "reports", quota=2, window=3600)
    assert "429" in client.app.openapi()["paths"]["/reports"]["post"]["responses"]


async def test_a_limit_set_off_and_all_limits_off(make_client: MakeClient) -> None:
    one_off = await make_client(rate_limit_register="off")
    for n in range(3):
        created = await one_off.post("/users", json=registration(n))
        assert created.status_code == 201
        assert "RateLimit" not in created.headers
    assert "429" not in one_off.app.openapi()["paths"]["/users"]["post"]["responses"]

    all_off = await make_client(rate_limits_enabled=False, rate_limit_register="1/hour")
    for n in range(3):
        assert (await all_off.post("/users", json=registration(f"b{n}"))).status_code == 201
    assert "429" not in all_off.app.openapi()["paths"]["/vote"]["post"]["responses"]


@pytest.mark.parametrize("text", ["ten/minute", "10/fortnight", "0/minute", "10", "-1/hour"])
def test_a_malformed_rate_is_refused_with_the_setting_named(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostKitSettings(_env_file=None, rate_limit_vote=text)  # type: ignore[call-arg]
    message = str(caught.value)
    assert "rate_limit_vote" in message
    assert "'off'" in message


def test_rates_are_read_in_every_documented_form() -> None:
    assert parse_rate("10/minute") is not None
    assert str(parse_rate("10/minute")) == "10/60s"
    assert str(parse_rate("5/15minutes")) == "5/900s"
    assert str(parse_rate(" 100 / 3600s ")) == "100/3600s"
    assert str(parse_rate("2/day")) == "2/86400s"
    assert parse_rate("OFF") is None


async def test_old_counters_are_pruned(make_client: MakeClient) -> None:
    client = await make_client(rate_limit_register="5/hour")
    for n in range(2):
        assert (await client.post("/users", json=registration(n))).status_code == 201
    assert await sql(client.kit, "SELECT count(*) FROM postkit_rate_limits") == [(1,)]
    store: Any = client.kit.rate_limits.store
    await store.prune()  # the window is still open: kept
    assert await sql(client.kit, "SELECT count(*) FROM postkit_rate_limits") == [(1,)]
    await store.prune(now=10**12)  # long after it ended: gone
    assert await sql(client.kit, "SELECT count(*) FROM postkit_rate_limits") == [(0,)]
    # Counters store no address in clear.
    assert (await client.post("/users", json=registration(9))).status_code == 201
    [(key,)] = await sql(client.kit, "SELECT key FROM postkit_rate_limits")
    assert key.startswith("register:")
    assert "127.0.0.1" not in key


# --- The OpenAPI document -------------------------------------------------------------------

LIMITED_ROUTES = [
    ("/users", "post"),
    ("/login", "post"),
    ("/token/refresh", "post"),
    ("/users/me", "patch"),
    ("/posts", "post"),
    ("/posts", "get"),
    ("/vote", "post"),
    ("/posts/{post_id}/vote", "put"),
    ("/posts/{post_id}/vote", "delete"),
]


async def test_openapi_documents_the_429_and_its_headers_on_every_limited_route(
    make_client: MakeClient,
) -> None:
    client = await make_client(prefix="/api")
    document = (await client.get("/openapi.json")).json()
    for path, method in LIMITED_ROUTES:
        answer = document["paths"][f"/api{path}"][method]["responses"]["429"]
        assert set(answer["headers"]) == {"Retry-After", "RateLimit", "RateLimit-Policy"}, path
        assert "RATE_LIMITED" in answer["description"]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert (
        DRAFT
        in document["paths"]["/api/vote"]["post"]["responses"]["429"]["headers"][
            "RateLimit-Policy"
        ]["description"]
    )
    unlimited = document["paths"]["/api/users/me"]["get"]["responses"]
    assert "429" not in unlimited


# --- Several worker processes ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres_only
def test_a_limit_holds_across_worker_processes(tmp_path: Path) -> None:
    """Three gunicorn workers on one PostgreSQL database: 12 concurrent registrations from one
    address with a limit of 5 let exactly 5 through, whichever workers answer them."""
    require_postgres("rate limits across worker processes")
    url = create_postgres_database("postkit_rl_workers")
    try:
        upgrade(url)
        port = free_port()
        env = server_env(url, rate_limit_register="5/hour", database_pool_size=4)
        with serve(gunicorn_command(port, 3), env=env, log_dir=tmp_path, port=port) as server:

            async def burst() -> list[int]:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    answers = await asyncio.gather(
                        *(http.post("/users", json=registration(n)) for n in range(12))
                    )
                    return sorted(answer.status_code for answer in answers)

            assert asyncio.run(burst()) == [201] * 5 + [429] * 7
            pids = {line for line in server.log.splitlines() if "Booting worker" in line}
            assert len(pids) == 3
    finally:
        drop_postgres_database(url)
