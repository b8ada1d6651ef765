"""The bounded password-hashing queues: new hashes and verifications wait in separate lanes,
and a full lane answers 503 SERVICE_BUSY with Retry-After at once instead of queueing."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from sqlalchemy import func, select

from postkit.models import LoginAttempt

PASSWORD = "correct horse battery staple"
BUSY = {"detail": "The server is busy; try again shortly.", "code": "SERVICE_BUSY"}


def from_address(kit_client, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=kit_client.app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def register(client) -> httpx.Response:
    email = f"q_{uuid.uuid4().hex[:10]}@example.com"
    return await client.post("/users", json={"email": email, "password": PASSWORD})


async def test_a_full_hashing_queue_answers_503_quickly(make_client):
    client = await make_client(bcrypt_rounds=10, password_hash_workers=1, password_hash_queue=1)
    started = time.monotonic()
    responses = await asyncio.gather(*(register(client) for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    # One hashing, one waiting; the others are turned away without waiting their turn.
    assert statuses.count(201) >= 2, statuses
    assert statuses.count(503) >= 1, statuses
    assert set(statuses) == {201, 503}
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.json() == BUSY
    assert busy.headers["retry-after"] == "1"
    assert time.monotonic() - started < 5
    # Once the queue drains, registrations go through again.
    assert (await register(client)).status_code == 201


async def test_logins_are_not_queued_behind_new_hashes(make_client, new_user):
    client = await make_client(bcrypt_rounds=10, password_hash_workers=1, password_hash_queue=0)
    user = await new_user(client)

    async def flood() -> list[int]:
        done = []
        for _ in range(4):
            batch = await asyncio.gather(*(register(client) for _ in range(6)))
            done += [r.status_code for r in batch]
        return done

    async def logins() -> list[int]:
        statuses = []
        for _ in range(6):
            response = await client.post(
                "/login", data={"username": user.email, "password": user.password}
            )
            statuses.append(response.status_code)
        return statuses

    registered, logged_in = await asyncio.gather(flood(), logins())
    assert 503 in registered  # the hashing lane was full...
    assert logged_in == [200] * 6  # ...and the verifying lane never was


async def test_a_full_verification_queue_answers_503_and_counts_no_failure(make_client, new_user):
    client = await make_client(
        bcrypt_rounds=10,
        password_verify_workers=1,
        password_verify_queue=0,
        login_max_failures=1,
    )
    user = await new_user(client)

    async def wrong(index: int) -> httpx.Response:
        async with from_address(client, f"10.5.0.{index}") as http:
            return await http.post("/login", data={"username": user.email, "password": "guess"})

    responses = await asyncio.gather(*(wrong(i) for i in range(6)))
    statuses = [r.status_code for r in responses]
    assert 503 in statuses, statuses
    assert set(statuses) <= {401, 503}
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.json() == BUSY
    assert busy.headers["retry-after"] == "1"
    # A refused-for-busy attempt checked nothing: it left no failure and no reservation.
    async with client.kit.db.sessionmaker() as session:
        rows = await session.scalar(select(func.count()).select_from(LoginAttempt))
    assert rows == 1 + 3 * statuses.count(401)  # the success of new_user, 3 budgets a failure
