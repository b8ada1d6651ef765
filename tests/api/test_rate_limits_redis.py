"""Rate limits counted in the real Redis server on 127.0.0.1:6379 (``redis_url``), and what
happens when Redis goes away: fail-open (the default) with one warning per outage, or
fail-closed (503 ``RATE_LIMIT_UNAVAILABLE``). Each test uses a key prefix of its own and
deletes its keys after."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text

from tests.support.api import KitClient
from tests.support.tcp_proxy import TcpProxy

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
MakeClient = Callable[..., Awaitable[KitClient]]


def redis_is_up() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own; its keys are deleted after."""
    if not redis_is_up():
        pytest.fail(f"Redis is not answering on {REDIS_HOST}:{REDIS_PORT}", pytrace=False)
    from redis.asyncio import Redis

    name = f"postkit-test:{uuid.uuid4().hex[:10]}:"
    yield name
    client = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = [key async for key in client.scan_iter(match=f"{name}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


async def with_ping(client: KitClient, rate: str = "10/hour") -> KitClient:
    """Add a cheap host route limited per address, to count hits without other work."""

    @client.app.get("/ping", dependencies=[client.kit.rate_limit("ping", rate=rate, per="address")])
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    client.kit.install_error_handlers(client.app)
    return client


async def statuses(client: KitClient, path: str, count: int) -> list[int]:
    answers = await asyncio.gather(*(client.get(path) for _ in range(count)))
    return sorted(answer.status_code for answer in answers)


async def test_fifty_concurrent_hits_with_limit_ten_let_exactly_ten_through(
    make_client: MakeClient, prefix: str
) -> None:
    # A generous timeout: this checks that counting is exact, not how fast Redis answers on a
    # loaded machine (a hit that timed out would fail open and pass uncounted).
    client = await with_ping(
        await make_client(
            redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            redis_key_prefix=prefix,
            redis_timeout=10,
        )
    )
    assert await statuses(client, "/ping", 50) == [200] * 10 + [429] * 40
    # Counted in Redis, not in the database.
    async with client.kit.db.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT count(*) FROM postkit_rate_limits"))).one()
    assert rows == (0,)
    refused = await client.get("/ping")
    assert refused.json()["code"] == "RATE_LIMITED"
    assert refused.headers["RateLimit"].startswith('"ping";r=0;t=')
    assert refused.headers["RateLimit-Policy"] == '"ping";q=10;w=3600'


async def test_postkit_routes_count_in_redis(make_client: MakeClient, prefix: str) -> None:
    client = await make_client(
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        redis_key_prefix=prefix,
        rate_limit_register="1/hour",
    )
    body = {"email": "a@example.com", "username": "aaaa", "password": "long enough password"}
    assert (await client.post("/users", json=body)).status_code == 201
    again = await client.post("/users", json=body | {"email": "b@example.com", "username": "bbbb"})
    assert again.status_code == 429
    assert again.headers["Retry-After"].isdigit()


async def test_two_kits_with_their_own_prefixes_do_not_share_counters(
    make_client: MakeClient, prefix: str
) -> None:
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    one = await with_ping(await make_client(redis_url=url, redis_key_prefix=prefix), "2/hour")
    two = await with_ping(
        await make_client(redis_url=url, redis_key_prefix=f"{prefix}other:"), "2/hour"
    )
    same = await with_ping(await make_client(redis_url=url, redis_key_prefix=prefix), "2/hour")
    assert [r.status_code for r in [await one.get("/ping"), await one.get("/ping")]] == [200, 200]
    assert (await two.get("/ping")).status_code == 200  # its own namespace
    assert (await same.get("/ping")).status_code == 429  # the same namespace: a shared counter


async def test_redis_down_fails_open_with_one_warning(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await with_ping(
        await make_client(redis_url=f"redis://127.0.0.1:{closed_port()}/0"), "1/minute"
    )
    with caplog.at_level(logging.WARNING, logger="postkit"):
        assert await statuses(client, "/ping", 20) == [200] * 20
        for _ in range(5):
            answer = await client.get("/ping")
            assert answer.status_code == 200
            assert "RateLimit" not in answer.headers
    warnings = [r for r in caplog.records if "rate limit store" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING
    assert "let through" in warnings[0].getMessage()


async def test_redis_down_fails_closed_when_asked(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await with_ping(
        await make_client(
            redis_url=f"redis://127.0.0.1:{closed_port()}/0", rate_limit_fail_open=False
        )
    )
    with caplog.at_level(logging.WARNING, logger="postkit"):
        answers = [await client.get("/ping") for _ in range(5)]
        registration = await client.post(
            "/users",
            json={"email": "c@example.com", "username": "cccc", "password": "long enough pw"},
        )
    for answer in [*answers, registration]:
        assert answer.status_code == 503
        assert answer.json()["code"] == "RATE_LIMIT_UNAVAILABLE"
        assert answer.headers["Retry-After"].isdigit()
    assert len([r for r in caplog.records if "rate limit store" in r.getMessage()]) == 1
    # Routes without a limit do not depend on Redis.
    assert (await client.get("/users/me")).status_code == 401


async def test_redis_going_away_mid_run_then_coming_back(
    make_client: MakeClient, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    with TcpProxy(REDIS_HOST, REDIS_PORT) as proxy:
        client = await with_ping(
            await make_client(
                redis_url=f"redis://127.0.0.1:{proxy.port}/0",
                redis_key_prefix=prefix,
                redis_timeout=1.0,  # long enough for a loaded CI machine to connect at all
            ),
            "3/hour",
        )
        with caplog.at_level(logging.WARNING, logger="postkit"):
            assert await statuses(client, "/ping", 3) == [200] * 3
            assert (await client.get("/ping")).status_code == 429

            proxy.blackhole()  # links freeze: Redis stops answering
            started = asyncio.get_running_loop().time()
            assert await statuses(client, "/ping", 10) == [200] * 10  # failed open
            assert asyncio.get_running_loop().time() - started < 5  # bounded by redis_timeout
            assert (await client.get("/ping")).status_code == 200

            proxy.refuse()  # then the host is gone altogether
            assert (await client.get("/ping")).status_code == 200

            proxy.forward()  # Redis is back: the counter it kept applies again
            await asyncio.sleep(1.1)  # past the pause before the store is tried again
            assert (await client.get("/ping")).status_code == 429
        messages = [r.getMessage() for r in caplog.records if "rate limit store" in r.getMessage()]
        assert len([m for m in messages if "does not answer" in m]) == 1, messages
        assert len([m for m in messages if "answers again" in m]) == 1, messages
