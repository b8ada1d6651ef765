"""Outage: PostgreSQL becomes unreachable mid-run, then comes back.

A TCP proxy the test controls sits between a real server process and PostgreSQL. While the link
is cut, requests answer 503 ``DATABASE_UNAVAILABLE`` promptly (no hang, no 500); once it is back,
the same process serves again without a restart, and every write that was acknowledged with a
2xx, before, during or after the outage, is in the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from postkit.migrations import upgrade
from tests.support.api import TestUser, register
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.support.ports import free_port
from tests.support.servers import serve, server_env, uvicorn_command
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

CONNECT_TIMEOUT = 1.0
POOL_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
# A request during an outage must be answered within this many seconds.
PROMPT = 8.0


@dataclass
class Ledger:
    """What the clients saw: every status, every acknowledged post, the slowest answer."""

    statuses: list[int] = field(default_factory=list)
    acknowledged: dict[int, str] = field(default_factory=dict)  # post id -> title
    slowest: float = 0.0
    bad: list[str] = field(default_factory=list)

    def record(self, response: httpx.Response, seconds: float) -> None:
        self.statuses.append(response.status_code)
        self.slowest = max(self.slowest, seconds)
        if response.status_code >= 500:
            body = response.json()
            if response.status_code != 503 or body.get("code") != "DATABASE_UNAVAILABLE":
                self.bad.append(f"{response.status_code} {response.text[:200]}")


@pytest.fixture
def proxied_database() -> Iterator[tuple[str, str, TcpProxy]]:
    """A migrated database; yields (direct URL, URL through the proxy, the proxy)."""
    require_postgres("database outage through a TCP proxy")
    direct = create_postgres_database("postkit_outage")
    try:
        upgrade(direct)
        parsed = make_url(direct)
        with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            through = parsed.set(host="127.0.0.1", port=proxy.port)
            yield direct, through.render_as_string(hide_password=False), proxy
    finally:
        drop_postgres_database(direct)


async def _writer(
    http: httpx.AsyncClient, account: TestUser, ledger: Ledger, stop: asyncio.Event, tag: str
) -> None:
    """Create posts, read them back, in a loop, recording what was acknowledged."""
    n = 0
    while not stop.is_set():
        n += 1
        title = f"{tag}-{n}"
        started = time.monotonic()
        try:
            response = await http.post(
                "/posts", json={"title": title, "content": "x"}, headers=account.headers
            )
        except httpx.TimeoutException:
            ledger.bad.append(f"POST /posts timed out after {time.monotonic() - started:.1f} s")
            continue
        ledger.record(response, time.monotonic() - started)
        if response.status_code == 201:
            ledger.acknowledged[response.json()["id"]] = title
        started = time.monotonic()
        try:
            read = await http.get("/posts", params={"limit": 5}, headers=account.headers)
        except httpx.TimeoutException:
            ledger.bad.append(f"GET /posts timed out after {time.monotonic() - started:.1f} s")
            continue
        ledger.record(read, time.monotonic() - started)
        await asyncio.sleep(0.02)


async def _phase(
    url: str, accounts: list[TestUser], ledger: Ledger, seconds: float, tag: str
) -> None:
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=PROMPT + 20) as http:
        tasks = [
            asyncio.create_task(_writer(http, a, ledger, stop, f"{tag}{i}"))
            for i, a in enumerate(accounts)
        ]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)


async def _wait_until_healthy(url: str, account: TestUser, timeout: float = 30.0) -> float:
    """Seconds until the server answers a database-backed request with 200 again."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=PROMPT + 20) as http:
        while time.monotonic() - started < timeout:
            response = await http.get("/users/me", headers=account.headers)
            if response.status_code == 200:
                return time.monotonic() - started
            assert response.status_code == 503, response.text
            await asyncio.sleep(0.2)
    raise AssertionError(f"the server did not recover within {timeout} s")


async def _stored_titles(direct: str) -> dict[int, str]:
    connection = await asyncpg.connect(direct)
    try:
        return {
            row["id"]: row["title"]
            for row in await connection.fetch("SELECT id, title FROM postkit_posts")
        }
    finally:
        await connection.close()


async def _scenario(
    url: str, direct: str, proxy: TcpProxy, cut: str
) -> tuple[Ledger, Ledger, Ledger, float]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        accounts = [await register(http) for _ in range(3)]
    before, during, after = Ledger(), Ledger(), Ledger()
    await _phase(url, accounts, before, 1.5, "before")
    getattr(proxy, cut)()
    try:
        await _phase(url, accounts, during, 4.0, "during")
    finally:
        proxy.forward()
    recovery = await _wait_until_healthy(url, accounts[0])
    await _phase(url, accounts, after, 1.5, "after")
    return before, during, after, recovery


def prompt_server_env(database_url: str, **settings: object) -> dict[str, str]:
    """A server that gives up on an unreachable database promptly (connect, pool, command)."""
    return server_env(
        database_url,
        database_connect_timeout=CONNECT_TIMEOUT,
        database_pool_timeout=POOL_TIMEOUT,
        database_command_timeout=COMMAND_TIMEOUT,
        **settings,
    )


@pytest.mark.parametrize("cut", ["refuse", "blackhole"])
def test_outage_answers_503_then_recovers_without_losing_writes(
    proxied_database: tuple[str, str, TcpProxy], tmp_path: Path, cut: str
) -> None:
    direct, through, proxy = proxied_database
    port = free_port()
    env = prompt_server_env(
        through,
        database_pool_size=3,
        database_max_overflow=2,
        login_max_failures=10_000,
    )
    with serve(uvicorn_command(port), env=env, log_dir=tmp_path, port=port) as server:
        before, during, after, recovery = asyncio.run(_scenario(server.url, direct, proxy, cut))
        log = server.log
        assert server.alive, log
    for name, ledger in [("before", before), ("during", during), ("after", after)]:
        assert not ledger.bad, (name, ledger.bad[:5], log[-4000:])
    assert before.statuses, before
    assert set(before.statuses) <= {200, 201}, before.statuses
    assert after.statuses, after
    assert set(after.statuses) <= {200, 201}, after.statuses
    # The outage was real and was answered 503, promptly.
    assert 503 in during.statuses, during.statuses
    assert set(during.statuses) <= {200, 201, 503}, during.statuses
    assert during.slowest < PROMPT, f"slowest answer during the outage: {during.slowest:.1f} s"
    assert recovery < 15, recovery
    # No acknowledged write was lost.
    stored = asyncio.run(_stored_titles(direct))
    acknowledged = {**before.acknowledged, **during.acknowledged, **after.acknowledged}
    missing = {pid: title for pid, title in acknowledged.items() if stored.get(pid) != title}
    assert not missing, missing
    assert "Traceback" not in log, log[-6000:]


# A connection reset at one precise step of a request: (what the client sends when the link
# drops, the request). Every one must answer 2xx or 503, never 500, and the next request works.
STEPS = [
    # Reads of posts send no BEGIN (one statement on the driver connection): writes still do.
    (b"BEGIN", "PUT", "/posts/{post}/vote"),
    (b"FROM postkit_users", "GET", "/users/me"),
    (b"ROLLBACK", "GET", "/users/me"),  # a read commits nothing: its session's close rolls back
    (b"FROM postkit_posts", "GET", "/posts"),
    (b"INSERT INTO postkit_posts", "POST", "/posts"),
    (b"COMMIT", "POST", "/posts"),
    (b"UPDATE postkit_posts", "PUT", "/posts/{post}/vote"),
    (b"COMMIT", "PUT", "/posts/{post}/vote"),
]


def test_a_link_lost_at_any_step_of_a_request_is_a_503(
    proxied_database: tuple[str, str, TcpProxy], tmp_path: Path
) -> None:
    _direct, through, proxy = proxied_database
    port = free_port()
    env = prompt_server_env(
        through,
        database_pool_size=2,
        database_max_overflow=0,
        # Without the statement cache every query travels as text, so the proxy can spot it.
        database_statement_cache_size=0,
    )

    async def scenario(url: str) -> list[str]:
        problems = []
        async with httpx.AsyncClient(base_url=url, timeout=PROMPT + 20) as http:
            owner, voter = await register(http), await register(http)
            created = await http.post(
                "/posts", json={"title": "t", "content": "c"}, headers=owner.headers
            )
            assert created.status_code == 201, created.text
            post = created.json()["id"]
            for pattern, method, path in STEPS:
                before = proxy.cuts_done
                proxy.cut_on(pattern)
                kwargs: dict[str, object] = {"headers": voter.headers}
                if method == "POST":
                    kwargs["json"] = {"title": "cut", "content": "c"}
                started = time.monotonic()
                try:
                    response = await http.request(
                        method,
                        path.replace("{post}", str(post)),
                        **kwargs,  # type: ignore[arg-type]
                    )
                except httpx.TransportError as exc:
                    problems.append(f"{method} {path} cut at {pattern.decode()}: {exc!r}")
                    proxy.cut_on(b"", 0)
                    continue
                seconds = time.monotonic() - started
                proxy.cut_on(b"", 0)
                step = f"{method} {path} cut at {pattern.decode()}"
                if proxy.cuts_done == before:
                    problems.append(f"{step}: the link was never cut (pattern not seen)")
                if response.status_code >= 500 and (
                    response.status_code != 503
                    or response.json().get("code") != "DATABASE_UNAVAILABLE"
                ):
                    problems.append(f"{step}: {response.status_code} {response.text[:200]}")
                if seconds > PROMPT:
                    problems.append(f"{step}: answered after {seconds:.1f} s")
                try:
                    again = await http.get("/users/me", headers=voter.headers)
                except httpx.TransportError as exc:
                    problems.append(f"{step}: the next request failed: {exc!r}")
                    continue
                if again.status_code != 200:
                    problems.append(f"{step}: the next request got {again.status_code}")
        return problems

    with serve(uvicorn_command(port), env=env, log_dir=tmp_path, port=port) as server:
        problems = asyncio.run(scenario(server.url))
        log = server.log
    assert not problems, "\n".join(problems) + "\n" + log[-6000:]
    assert "Traceback" not in log, log[-6000:]


def test_pooled_connections_that_died_while_idle_are_replaced_before_use(
    proxied_database: tuple[str, str, TcpProxy], tmp_path: Path
) -> None:
    """A database restart during a quiet spell costs no request an error: connections idle in
    the pool for a while are checked before use, and dead ones replaced."""
    from postkit.db import IDLE_PING_SECONDS

    _direct, through, proxy = proxied_database
    port = free_port()
    env = server_env(through, database_pool_size=2, database_max_overflow=0)

    async def scenario(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=PROMPT + 20) as http:
            account = await register(http)
            statuses = []
            for _ in range(2):
                # Warm pooled connections, then kill them behind the server's back.
                await asyncio.gather(
                    *(http.get("/users/me", headers=account.headers) for _ in range(4))
                )
                proxy.refuse()
                proxy.forward()
                await asyncio.sleep(IDLE_PING_SECONDS + 0.5)
                statuses += [
                    r.status_code
                    for r in await asyncio.gather(
                        *(http.get("/users/me", headers=account.headers) for _ in range(4))
                    )
                ]
            return statuses

    with serve(uvicorn_command(port), env=env, log_dir=tmp_path, port=port) as server:
        statuses = asyncio.run(scenario(server.url))
        log = server.log
    assert statuses == [200] * 8, (statuses, log[-4000:])
