"""Login throttling: per account identifier and per client address, in the database."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from postkit.models import LoginAttempt, utcnow

TOO_MANY = {
    "detail": "Too many failed login attempts; try again later",
    "code": "TOO_MANY_ATTEMPTS",
}


@asynccontextmanager
async def from_address(kit_client, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app whose requests come from ``host``."""
    transport = httpx.ASGITransport(app=kit_client.app, client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def login(client, name, password):
    return await client.post("/login", data={"username": name, "password": password})


def key_of(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def attempt_rows(kit_client) -> list[LoginAttempt]:
    async with kit_client.kit.db.sessionmaker() as session:
        return list((await session.scalars(select(LoginAttempt))).all())


async def age_attempts(kit_client, by: timedelta) -> None:
    """Pretend the recorded attempts happened ``by`` earlier."""
    async with kit_client.kit.db.sessionmaker() as session:
        for row in (await session.scalars(select(LoginAttempt))).all():
            row.attempted_at -= by
        await session.commit()


async def test_failures_per_account_are_limited(make_client, new_user):
    client = await make_client(login_max_failures=3, login_failure_window=timedelta(minutes=1))
    user = await new_user(client)
    statuses = []
    for attempt in range(5):
        # A new address each time: only the account counter can be what stops them.
        async with from_address(client, f"10.0.0.{attempt + 1}") as http:
            response = await login(http, user.email, "wrong password")
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429]
    assert response.json() == TOO_MANY
    assert 55 <= int(response.headers["retry-after"]) <= 60
    # Locked means locked: the right password is not even checked.
    async with from_address(client, "10.0.0.99") as http:
        locked = await login(http, user.email, user.password)
        assert locked.status_code == 429
        # The account counter is keyed on what was typed, case-insensitively.
        assert (await login(http, user.email.upper(), user.password)).status_code == 429
        # Another account from a fresh address is not affected.
        other = await new_user(http)
        assert (await login(http, other.email, other.password)).status_code == 200


async def test_failures_per_address_are_limited(make_client, new_user):
    client = await make_client(login_max_failures=3)
    users = [await new_user(client) for _ in range(5)]
    async with from_address(client, "192.0.2.7") as attacker:
        statuses = [
            (await login(attacker, user.email, "wrong password")).status_code for user in users
        ]
        assert statuses == [401, 401, 401, 429, 429]
        assert (await login(attacker, users[0].email, users[0].password)).status_code == 429
    # The accounts themselves are fine from elsewhere.
    async with from_address(client, "198.51.100.1") as elsewhere:
        assert (await login(elsewhere, users[4].email, users[4].password)).status_code == 200


async def test_unknown_accounts_are_throttled_like_real_ones(make_client, new_user):
    client = await make_client(login_max_failures=2)
    user = await new_user(client)
    answers = {}
    for name in (user.email, "ghost@example.com"):
        statuses = []
        for attempt in range(3):
            async with from_address(client, f"10.{len(answers)}.0.{attempt + 1}") as http:
                response = await login(http, name, "wrong password")
            statuses.append(response.status_code)
        answers[name] = (statuses, response.json())
    assert answers[user.email] == answers["ghost@example.com"] == ([401, 401, 429], TOO_MANY)


async def test_retry_after_counts_down_to_when_the_oldest_failure_expires(make_client, new_user):
    window = timedelta(minutes=10)
    client = await make_client(login_max_failures=2, login_failure_window=window)
    user = await new_user(client)
    for _ in range(2):
        assert (await login(client, user.email, "wrong password")).status_code == 401
    first = await login(client, user.email, "wrong password")
    assert first.status_code == 429
    assert 595 <= int(first.headers["retry-after"]) <= 600

    await age_attempts(client, timedelta(minutes=9))
    later = await login(client, user.email, user.password)
    assert later.status_code == 429
    assert 55 <= int(later.headers["retry-after"]) <= 60

    await age_attempts(client, timedelta(minutes=1, seconds=1))
    assert (await login(client, user.email, user.password)).status_code == 200


async def test_a_successful_login_clears_the_account_failures(make_client, new_user):
    client = await make_client(login_max_failures=3)
    user = await new_user(client)
    for attempt in range(2):
        async with from_address(client, f"10.1.0.{attempt}") as http:
            assert (await login(http, user.email, "wrong password")).status_code == 401
    async with from_address(client, "10.1.1.1") as http:
        assert (await login(http, user.email, user.password)).status_code == 200
    statuses = []
    for attempt in range(4):
        async with from_address(client, f"10.2.0.{attempt}") as http:
            statuses.append((await login(http, user.email, "wrong password")).status_code)
    assert statuses == [401, 401, 401, 429]


async def test_refused_attempts_do_not_extend_the_lockout(make_client, new_user):
    client = await make_client(login_max_failures=2)
    user = await new_user(client)
    for _ in range(2):
        assert (await login(client, user.email, "wrong password")).status_code == 401
    for _ in range(5):
        assert (await login(client, user.email, "wrong password")).status_code == 429
    # Only the two evaluated failures are on record (one row per key each).
    rows = await attempt_rows(client)
    assert len(rows) == 4


@pytest.mark.parametrize("same_address", [True, False])
async def test_concurrent_attempts_never_evaluate_more_than_the_limit(
    make_client, new_user, same_address
):
    limit = 3
    client = await make_client(login_max_failures=limit)
    user = await new_user(client)

    async def wrong(index: int) -> int:
        host = "203.0.113.5" if same_address else f"203.0.113.{index + 10}"
        # Same address: both counters race. New addresses: only the account counter guards.
        name = user.email if not same_address else f"victim{index}@example.com"
        async with from_address(client, host) as http:
            return (await login(http, name, "wrong password")).status_code

    statuses = []
    for round_ in range(2):
        statuses += await asyncio.gather(*(wrong(round_ * 20 + i) for i in range(12)))
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= limit, statuses
    # Whatever the race left over is used up one at a time, and then nothing more gets in.
    for i in range(limit + 2):
        statuses.append(await wrong(100 + i))
    assert statuses.count(401) == limit, statuses


async def test_counters_store_digests_and_old_rows_are_pruned(make_client, new_user):
    window = timedelta(minutes=5)
    client = await make_client(login_max_failures=5, login_failure_window=window)
    user = await new_user(client)
    assert (await login(client, user.email, "wrong password")).status_code == 401
    rows = await attempt_rows(client)
    assert {row.key for row in rows} == {
        key_of(f"account:{user.email}"),
        key_of("ip:127.0.0.1"),
    }
    assert all(user.email not in row.key for row in rows)

    await age_attempts(client, window + timedelta(seconds=1))
    assert (await login(client, user.email, "wrong password")).status_code == 401
    async with client.kit.db.sessionmaker() as session:
        cutoff = utcnow() - window
        old = await session.scalar(
            select(func.count()).select_from(LoginAttempt).where(LoginAttempt.attempted_at < cutoff)
        )
    assert old == 0
    assert len(await attempt_rows(client)) == 2
