"""Login throttling: budgets per account and network, per network, per account; in the database.

Every test goes through HTTP. ``new_user`` logs its user in from 127.0.0.1, so that address is
*familiar* for every user it makes; other addresses start unfamiliar.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from postkit import PostKitSettings
from postkit.models import LoginAttempt, utcnow

TOO_MANY = {
    "detail": "Too many failed login attempts; try again later",
    "code": "TOO_MANY_ATTEMPTS",
}
NEW_PASSWORD = "a brand new passphrase"


@asynccontextmanager
async def from_address(kit_client, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app whose requests come from ``host``."""
    transport = httpx.ASGITransport(app=kit_client.app, client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def login(client, name, password):
    return await client.post("/login", data={"username": name, "password": password})


async def login_from(kit_client, host: str, name: str, password: str) -> httpx.Response:
    async with from_address(kit_client, host) as http:
        return await login(http, name, password)


async def attempt_rows(kit_client) -> list[LoginAttempt]:
    async with kit_client.kit.db.sessionmaker() as session:
        return list((await session.scalars(select(LoginAttempt))).all())


async def age_attempts(kit_client, by: timedelta) -> None:
    """Pretend the recorded attempts (and successes) happened ``by`` earlier."""
    async with kit_client.kit.db.sessionmaker() as session:
        for row in (await session.scalars(select(LoginAttempt))).all():
            row.attempted_at -= by
        await session.commit()


def test_the_defaults_leave_room_for_shared_addresses():
    settings = PostKitSettings(_env_file=None, secret_key="x" * 40)  # type: ignore[call-arg]
    assert settings.login_address_max_failures >= 100
    assert settings.login_failure_window == timedelta(minutes=15)
    assert settings.login_max_failures < settings.login_account_max_failures


# --- One address, many accounts -----------------------------------------------------------------


async def test_failures_on_other_accounts_do_not_refuse_a_correct_password(make_client, new_user):
    client = await make_client()  # default budgets
    user = await new_user(client)
    statuses = [
        (await login_from(client, "192.0.2.7", f"ghost{i}@example.com", "wrong")).status_code
        for i in range(30)
    ]
    assert statuses == [401] * 30  # six times the old per-address lockout
    # The user has no failures of their own there, and the address is unfamiliar to them.
    assert (await login_from(client, "192.0.2.7", user.email, user.password)).status_code == 200


async def test_the_network_budget_stops_credential_stuffing(make_client, new_user):
    client = await make_client(login_address_max_failures=6)
    regular = await new_user(client)  # familiar with 127.0.0.1
    stranger = await new_user(client)
    async with from_address(client, "127.0.0.1") as http:
        statuses = [
            (await login(http, f"victim{i}@example.com", "wrong")).status_code for i in range(8)
        ]
    assert statuses == [401] * 6 + [429] * 2
    # An account that last logged in from here still can; it is not what stuffing guesses at.
    assert (await login(client, regular.email, regular.password)).status_code == 200
    assert (await login(client, stranger.email, stranger.password)).status_code == 200
    # A brand-new account has never been seen here: refused until the window passes.
    async with from_address(client, "198.51.100.9") as elsewhere:
        fresh = await register_only(elsewhere)
    refused = await login(client, fresh, "correct horse battery staple")
    assert refused.status_code == 429
    assert refused.json() == TOO_MANY
    assert 800 <= int(refused.headers["retry-after"]) <= 900
    # Other networks are unaffected.
    assert (
        await login_from(client, "198.51.100.9", fresh, "correct horse battery staple")
    ).status_code == 200


async def register_only(http: httpx.AsyncClient) -> str:
    """Register an account without logging in (so no network is familiar to it); its email."""
    email = f"fresh_{uuid.uuid4().hex[:8]}@example.com"
    created = await http.post(
        "/users", json={"email": email, "password": "correct horse battery staple"}
    )
    assert created.status_code == 201, created.text
    return email


async def test_ipv6_clients_share_a_budget_per_64_and_ipv4_per_address(make_client):
    client = await make_client(login_address_max_failures=3)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:fffe"):
        assert (await login_from(client, host, f"g{host}@example.com", "wrong")).status_code == 401
    # Every address of that /64 is one network: its budget is spent.
    assert (await login_from(client, "2001:db8:1:2::99", "x@example.com", "w")).status_code == 429
    # The next /64, and IPv4 neighbours, each have their own.
    assert (await login_from(client, "2001:db8:1:3::1", "x@example.com", "w")).status_code == 401
    for host in ("192.0.2.1", "192.0.2.1", "192.0.2.1"):
        assert (await login_from(client, host, f"v4{host}@e.com", "w")).status_code == 401
    assert (await login_from(client, "192.0.2.1", "y@example.com", "w")).status_code == 429
    assert (await login_from(client, "192.0.2.2", "y@example.com", "w")).status_code == 401
    # IPv4-mapped IPv6 is the IPv4 address.
    assert (await login_from(client, "::ffff:192.0.2.1", "z@example.com", "w")).status_code == 429


# --- One account, many addresses ----------------------------------------------------------------


async def test_someone_elses_failures_do_not_refuse_the_owner(make_client, new_user):
    client = await make_client(login_max_failures=3, login_delay=timedelta(minutes=1))
    owner = await new_user(client)
    # A third party fails at the owner's account from one address until it is throttled there...
    statuses = [
        (await login_from(client, "203.0.113.66", owner.email, "guess")).status_code
        for _ in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    # ...and from a spread of others, below the account's budget.
    for i in range(10):
        assert (await login_from(client, f"10.9.0.{i}", owner.username, "guess")).status_code == 401
    # The owner, from an address that has no failures for the account, gets in at once.
    assert (
        await login_from(client, "198.51.100.20", owner.email, owner.password)
    ).status_code == 200
    assert (await login(client, owner.email, owner.password)).status_code == 200


async def test_past_the_account_budget_only_familiar_networks_get_in(make_client, new_user):
    client = await make_client(login_account_max_failures=4)
    owner = await new_user(client)  # familiar with 127.0.0.1
    for i in range(4):
        assert (await login_from(client, f"10.8.0.{i}", owner.email, "guess")).status_code == 401
    # Distributed guessing is bounded: no further guess is checked from unfamiliar networks,
    # not even a right one (that would make the budget a guessing oracle).
    refused = await login_from(client, "10.8.1.1", owner.email, owner.password)
    assert refused.status_code == 429
    assert refused.json() == TOO_MANY
    assert 800 <= int(refused.headers["retry-after"]) <= 900
    # The username has a budget of its own (one shared with the email would reveal which email
    # a username has): guessing through it is bounded the same way, separately.
    assert (await login_from(client, "10.8.1.2", owner.username, "guess")).status_code == 401
    # The owner at home is not locked out, and changing the password lifts the block.
    assert (await login(client, owner.email, owner.password)).status_code == 200
    changed = await client.patch(
        "/users/me",
        json={"password": NEW_PASSWORD, "current_password": owner.password},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.text
    assert (await login_from(client, "10.8.1.1", owner.email, NEW_PASSWORD)).status_code == 200


async def test_a_network_stays_familiar_for_the_familiar_window(make_client, new_user):
    window = timedelta(days=2)
    client = await make_client(login_account_max_failures=2, login_familiar_window=window)
    owner = await new_user(client)
    for i in range(2):
        assert (await login_from(client, f"10.7.0.{i}", owner.email, "guess")).status_code == 401
    await age_attempts(client, timedelta(days=1))  # the failures are gone, the success is not
    for i in range(2):
        assert (await login_from(client, f"10.7.1.{i}", owner.email, "guess")).status_code == 401
    assert (await login(client, owner.email, owner.password)).status_code == 200
    await age_attempts(client, window + timedelta(seconds=1))
    for i in range(2):
        assert (await login_from(client, f"10.7.2.{i}", owner.email, "guess")).status_code == 401
    # Two days without a login: 127.0.0.1 is a stranger again.
    assert (await login(client, owner.email, owner.password)).status_code == 429


async def test_the_throttle_does_not_tell_which_email_a_username_has(make_client, new_user):
    """Exhausting the budget through the public username must not make the account's private
    email answer differently from any other address: each identifier has a budget of its own,
    and its case and spacing do not matter."""
    client = await make_client(login_max_failures=2, login_delay=timedelta(seconds=60))
    user = await new_user(client)
    host = "203.0.113.9"
    assert (await login_from(client, host, user.username, "guess")).status_code == 401
    assert (await login_from(client, host, user.username.upper(), "guess")).status_code == 401
    throttled = await login_from(client, host, f"  {user.username} ", user.password)
    assert throttled.status_code == 429
    assert 55 <= int(throttled.headers["retry-after"]) <= 60
    # The real email and a made-up one answer alike: a wrong password is a plain 401 for both.
    for candidate in (user.email, "someone.else@example.com"):
        probe = await login_from(client, host, candidate, "guess")
        assert (probe.status_code, probe.json()["code"]) == (401, "INVALID_CREDENTIALS")
    # And the owner signs in with the email meanwhile.
    assert (await login_from(client, host, user.email, user.password)).status_code == 200


async def test_unknown_accounts_are_throttled_like_real_ones(make_client, new_user):
    client = await make_client(
        login_max_failures=2, login_account_max_failures=3, login_delay=timedelta(minutes=1)
    )
    user = await new_user(client)
    answers = {}
    for n, name in enumerate((user.email, "ghost@example.com")):
        same_address = [
            (await login_from(client, f"10.{n}.0.1", name, "guess")).json()["code"]
            for _ in range(3)
        ]
        spread = [
            (await login_from(client, f"10.{n}.1.{i}", name, "guess")).json()["code"]
            for i in range(3)
        ]
        answers[name] = (same_address, spread)
    assert answers[user.email] == answers["ghost@example.com"]
    assert answers[user.email] == (
        ["INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "TOO_MANY_ATTEMPTS"],
        ["INVALID_CREDENTIALS", "TOO_MANY_ATTEMPTS", "TOO_MANY_ATTEMPTS"],
    )


# --- Progressive delay --------------------------------------------------------------------------


async def test_past_the_pair_budget_each_check_waits_twice_as_long(make_client, new_user):
    client = await make_client(login_max_failures=2, login_delay=timedelta(seconds=10))
    user = await new_user(client)
    for _ in range(2):
        assert (await login(client, user.email, "typo")).status_code == 401
    first = await login(client, user.email, user.password)
    assert first.status_code == 429
    assert 9 <= int(first.headers["retry-after"]) <= 10
    await age_attempts(client, timedelta(seconds=11))
    assert (await login(client, user.email, "typo")).status_code == 401
    second = await login(client, user.email, user.password)
    assert second.status_code == 429
    assert 19 <= int(second.headers["retry-after"]) <= 20
    await age_attempts(client, timedelta(seconds=21))
    # Never a lockout: after the delay the right password works, and clears the failures.
    assert (await login(client, user.email, user.password)).status_code == 200
    statuses = [(await login(client, user.email, "typo")).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


async def test_refused_attempts_are_not_counted(make_client, new_user):
    client = await make_client(login_max_failures=2, login_delay=timedelta(minutes=5))
    user = await new_user(client)
    for _ in range(2):
        assert (await login(client, user.email, "wrong password")).status_code == 401
    for _ in range(5):
        assert (await login(client, user.email, "wrong password")).status_code == 429
    rows = await attempt_rows(client)
    # Two failures under the familiar pair's budget only, and the success from new_user.
    assert sorted(row.key[0] for row in rows) == ["F", "F", "S"]


async def test_the_current_password_check_shares_the_login_budget(make_client, new_user):
    client = await make_client(login_max_failures=2, login_delay=timedelta(minutes=5))
    user = await new_user(client)
    wrong = await client.patch(
        "/users/me",
        json={"password": NEW_PASSWORD, "current_password": "guess"},
        headers=user.headers,
    )
    assert wrong.status_code == 403
    assert (await login(client, user.email, "guess")).status_code == 401  # the same identifier
    for _ in range(2):
        refused = await client.patch(
            "/users/me",
            json={"password": NEW_PASSWORD, "current_password": user.password},
            headers=user.headers,
        )
        assert refused.status_code == 429
    assert (await login(client, user.email, user.password)).status_code == 429
    # From another network the owner's correct password is checked at once.
    async with from_address(client, "198.51.100.30") as http:
        changed = await http.patch(
            "/users/me",
            json={"password": NEW_PASSWORD, "current_password": user.password},
            headers=user.headers,
        )
    assert changed.status_code == 200


# --- Concurrency --------------------------------------------------------------------------------


async def test_attempts_in_flight_never_refuse_a_correct_password(make_client, new_user):
    client = await make_client(
        login_max_failures=1, login_address_max_failures=2, login_account_max_failures=2
    )
    users = [await new_user(client) for _ in range(8)]

    async def correct(user, host):
        return (await login_from(client, host, user.email, user.password)).status_code

    # Many accounts at once from one unfamiliar address (a campus NAT)...
    assert await asyncio.gather(*(correct(u, "100.64.0.1") for u in users)) == [200] * 8
    # ...and one account from many devices behind one address at once.
    assert await asyncio.gather(*(correct(users[0], "100.64.0.2") for _ in range(8))) == [200] * 8


@pytest.mark.parametrize("budget", ["pair", "network", "account"])
async def test_concurrent_guesses_never_exceed_a_budget(make_client, new_user, budget):
    limit = 3
    client = await make_client(
        login_max_failures=limit if budget == "pair" else 1000,
        login_delay=timedelta(minutes=10),
        login_address_max_failures=limit if budget == "network" else 1000,
        login_account_max_failures=limit if budget == "account" else 1000,
    )
    user = await new_user(client)

    async def wrong(index: int) -> int:
        if budget == "pair":
            host, name = "203.0.113.5", user.email
        elif budget == "network":
            host, name = "203.0.113.5", f"victim{index}@example.com"
        else:
            host, name = f"10.{index // 250}.{index % 250}.1", user.email
        return (await login_from(client, host, name, "wrong password")).status_code

    statuses = []
    for round_ in range(2):
        statuses += await asyncio.gather(*(wrong(round_ * 20 + i) for i in range(12)))
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= limit, statuses
    for i in range(limit + 2):
        statuses.append(await wrong(100 + i))
    assert statuses.count(401) == limit, statuses


# --- Storage ------------------------------------------------------------------------------------


async def test_rows_store_digests_and_old_rows_are_pruned(make_client, new_user):
    window = timedelta(minutes=5)
    client = await make_client(login_failure_window=window)
    user = await new_user(client)
    assert (await login_from(client, "192.0.2.50", user.email, "wrong password")).status_code == 401
    rows = await attempt_rows(client)
    assert sorted(row.key[0] for row in rows) == ["F", "F", "F", "S"]
    assert all(len(row.key) == 64 for row in rows)
    assert all(user.email not in row.key and "192.0.2.50" not in row.key for row in rows)

    await age_attempts(client, window + timedelta(seconds=1))
    assert (await login_from(client, "192.0.2.50", user.email, "wrong password")).status_code == 401
    async with client.kit.db.sessionmaker() as session:
        cutoff = utcnow() - window
        old = await session.scalar(
            select(func.count())
            .select_from(LoginAttempt)
            .where(LoginAttempt.attempted_at < cutoff, LoginAttempt.key.like("F%"))
        )
    assert old == 0
    # The success that makes 127.0.0.1 familiar is kept for the familiar window.
    assert sorted(row.key[0] for row in await attempt_rows(client)) == ["F", "F", "F", "S"]
