"""The login throttle's bounds through several uvicorn worker processes, on SQLite and PostgreSQL.

Clients connect from distinct loopback source addresses (127.0.0.x), so the server sees distinct
networks. Bursts are spread over the workers by the kernel; whatever the interleaving, no budget
lets more wrong guesses be checked than it allows, and correct passwords in flight together are
never refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from postkit.migrations import upgrade
from tests.support.api import TEST_PASSWORD
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.ports import free_port
from tests.support.servers import LiveProcess, serve, server_env, uvicorn_command

WORKERS = 3
LIMIT = 3


pytestmark = pytest.mark.slow  # real server processes


@pytest.fixture(scope="module")
def throttle_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveProcess]:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('throttle') / 'throttle.db'}"
    else:
        url = create_postgres_database("postkit_throttle")
    try:
        upgrade(url)
        port = free_port()
        env = server_env(
            url,
            database_pool_size=4,
            login_max_failures=LIMIT,
            login_address_max_failures=LIMIT,
            login_account_max_failures=LIMIT,
            login_delay=600,
        )
        log_dir: Path = tmp_path_factory.mktemp("throttle-logs")
        command = uvicorn_command(port, "--workers", str(WORKERS))
        with serve(command, env=env, log_dir=log_dir, port=port) as server:
            yield server
            assert "Traceback" not in server.log, server.log[-6000:]
    finally:
        if backend != "sqlite":
            drop_postgres_database(url)


def client_from(server: LiveProcess, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(transport=transport, base_url=server.url, timeout=30)


async def new_account(server: LiveProcess) -> str:
    """An account no network is familiar to yet; its email."""
    email = f"w_{uuid.uuid4().hex[:10]}@example.com"
    async with client_from(server, "127.0.0.1") as http:
        created = await http.post("/users", json={"email": email, "password": TEST_PASSWORD})
    assert created.status_code == 201, created.text
    return email


async def attempt(server: LiveProcess, source: str, name: str, password: str) -> int:
    async with client_from(server, source) as http:
        response = await http.post("/login", data={"username": name, "password": password})
    return response.status_code


async def burst_then_drain(calls) -> list[int]:  # type: ignore[no-untyped-def]
    statuses = list(await asyncio.gather(*(call() for call in calls[:24])))
    statuses += [await call() for call in calls[24:]]
    return statuses


def test_correct_passwords_in_flight_together_are_all_checked(throttle_server: LiveProcess) -> None:
    async def run() -> tuple[list[int], list[int]]:
        emails = [await new_account(throttle_server) for _ in range(12)]
        many = await asyncio.gather(
            *(attempt(throttle_server, "127.0.0.2", email, TEST_PASSWORD) for email in emails)
        )
        one = await asyncio.gather(
            *(attempt(throttle_server, "127.0.0.3", emails[0], TEST_PASSWORD) for _ in range(12))
        )
        return list(many), list(one)

    many, one = asyncio.run(run())
    assert many == [200] * 12  # twelve accounts behind one address, budgets of three
    assert one == [200] * 12  # one account on twelve devices behind one address


@pytest.mark.parametrize("budget", ["pair", "network", "account"])
def test_no_budget_checks_more_guesses_than_it_allows(
    throttle_server: LiveProcess, budget: str
) -> None:
    async def run() -> list[int]:
        victim = await new_account(throttle_server)
        source = f"127.0.{ {'pair': 10, 'network': 11, 'account': 12}[budget] }.1"

        def call(index: int):  # type: ignore[no-untyped-def]
            if budget == "pair":
                return lambda: attempt(throttle_server, source, victim, "guess")
            if budget == "network":
                return lambda: attempt(throttle_server, source, f"n{index}@example.com", "guess")
            return lambda: attempt(throttle_server, f"127.1.{index}.1", victim, "guess")

        return await burst_then_drain([call(i) for i in range(30)])

    statuses = asyncio.run(run())
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(401) == LIMIT, statuses
