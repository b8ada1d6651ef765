"""Connection pooling at scale: the app behind PgBouncer in transaction pooling mode.

PgBouncer hands each transaction to whichever server connection is free, so anything a client
leaves on a server connection between transactions (named prepared statements above all) shows
up in another client's session. With ``database_statement_cache_size=0`` postkit must work there:
registration, login, posts and votes, concurrently, from several app processes, with fewer
server connections than client connections so that sharing really happens.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
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
    postgres_server_url,
    require_postgres,
)
from tests.support.ports import free_port
from tests.support.servers import gunicorn_command, serve, server_env, stop_process

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

SERVER_CONNECTIONS = 3  # per database/user pair: far fewer than the app's pool


def _pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("pgbouncer is not installed; CI must run the PgBouncer tests")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    return found


@pytest.fixture
def pgbouncer() -> Iterator[str]:
    """A PgBouncer in transaction pooling mode in front of the test server; yields its URL."""
    require_postgres("PgBouncer in front of PostgreSQL")
    binary = _pgbouncer_binary()
    server = make_url(postgres_server_url() or "")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="postkit-pgbouncer-"))
    user = server.username or "postgres"
    (workdir / "userlist.txt").write_text(f'"{user}" "{server.password or ""}"\n')
    (workdir / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}"
                + (f" password={server.password}" if server.password else ""),
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {workdir / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {SERVER_CONNECTIONS}",
                "max_client_conn = 500",
                "ignore_startup_parameters = extra_float_digits",
                "server_reset_query =",
                f"logfile = {workdir / 'pgbouncer.log'}",
                "",
            ]
        )
    )
    command = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: drop to the postgres account
        command[1:1] = ["-u", "postgres"]
        workdir.chmod(0o777)
        for path in workdir.iterdir():
            path.chmod(0o666)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"pgbouncer exited: {output}")
            try:
                with __import__("socket").create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield f"postgresql://{user}@127.0.0.1:{port}"
    finally:
        stop_process(process)  # type: ignore[arg-type]
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def bounced_database(pgbouncer: str) -> Iterator[str]:
    """A fresh database migrated directly, and its URL through PgBouncer."""
    direct = create_postgres_database("postkit_bouncer")
    try:
        upgrade(direct)
        name = make_url(direct).database
        yield f"{pgbouncer}/{name}"
    finally:
        drop_postgres_database(direct)


async def _load(url: str, *, clients: int = 12) -> list[int]:
    """Register, log in, post, vote, unvote, edit and read, many clients at once."""
    statuses: list[int] = []
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def call(method: str, path: str, **kwargs: object) -> httpx.Response:
            response = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
            statuses.append(response.status_code)
            return response

        accounts: list[TestUser] = list(
            await asyncio.gather(*(register(http) for _ in range(clients)))
        )
        posts: list[int] = []
        for created in await asyncio.gather(
            *(
                call(
                    "POST", "/posts", json={"title": f"post{i}", "content": "c"}, headers=a.headers
                )
                for i, a in enumerate(accounts)
            )
        ):
            assert created.status_code == 201, created.text
            posts.append(created.json()["id"])

        async def session(account: TestUser) -> None:
            for _ in range(12):
                post = rng.choice(posts)
                action = rng.randrange(6)
                if action == 0:
                    await call("PUT", f"/posts/{post}/vote", headers=account.headers)
                elif action == 1:
                    await call("DELETE", f"/posts/{post}/vote", headers=account.headers)
                elif action == 2:
                    await call(
                        "POST", "/vote", json={"post_id": post, "dir": 1}, headers=account.headers
                    )
                elif action == 3:
                    await call(
                        "GET",
                        "/posts",
                        params={"search": "post1", "limit": 5},
                        headers=account.headers,
                    )
                elif action == 4:
                    page = await call("GET", "/posts", params={"limit": 3}, headers=account.headers)
                    cursor = page.headers.get("x-next-cursor")
                    if cursor:
                        await call(
                            "GET",
                            "/posts",
                            params={"limit": 3, "cursor": cursor},
                            headers=account.headers,
                        )
                else:
                    await call("GET", f"/posts/{post}", headers=account.headers)
            login = await call(
                "POST",
                "/login",
                data={"username": account.username, "password": "correct horse battery staple"},
            )
            assert login.status_code == 200, login.text

        await asyncio.gather(*(session(a) for a in accounts))
    return statuses


async def _vote_counts_are_exact(direct_url: str) -> list[tuple[int, int, int]]:
    connection = await asyncpg.connect(direct_url)
    try:
        rows = await connection.fetch(
            """
            SELECT p.id, p.vote_count, coalesce(sum(v.weight), 0) AS total
            FROM postkit_posts p LEFT JOIN postkit_votes v ON v.post_id = p.id
            GROUP BY p.id HAVING p.vote_count <> coalesce(sum(v.weight), 0)
            """
        )
        return [tuple(row) for row in rows]
    finally:
        await connection.close()


def test_app_works_behind_pgbouncer_in_transaction_mode(
    bounced_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = server_env(
        bounced_database,
        database_statement_cache_size=0,
        database_pool_size=6,
        database_max_overflow=4,
        login_max_failures=10_000,  # every client logs in from 127.0.0.1 at once
    )
    with serve(gunicorn_command(port, 2), env=env, log_dir=tmp_path, port=port) as server:
        statuses = asyncio.run(_load(server.url))
        errors = [s for s in statuses if s >= 500]
        assert not errors, f"{len(errors)} server errors:\n{server.log[-6000:]}"
        assert "Traceback" not in server.log, server.log[-6000:]
    direct = make_url(postgres_server_url() or "").set(database=make_url(bounced_database).database)
    wrong = asyncio.run(
        _vote_counts_are_exact(
            direct.set(drivername="postgresql").render_as_string(hide_password=False)
        )
    )
    assert wrong == []


@pytest.fixture
def bounced_empty_database(pgbouncer: str) -> Iterator[str]:
    """A fresh database with no tables, and its URL through PgBouncer."""
    direct = create_postgres_database("postkit_bouncer_empty")
    try:
        yield f"{pgbouncer}/{make_url(direct).database}"
    finally:
        drop_postgres_database(direct)


def test_auto_migrate_through_pgbouncer(bounced_empty_database: str, tmp_path: Path) -> None:
    """Workers that migrate at start-up through PgBouncer all come up on one schema."""
    port = free_port()
    env = server_env(
        bounced_empty_database,
        database_statement_cache_size=0,
        auto_migrate=True,
        login_max_failures=10_000,
    )
    with serve(gunicorn_command(port, 2), env=env, log_dir=tmp_path, port=port) as server:
        statuses = asyncio.run(_load(server.url, clients=4))
        assert all(s < 500 for s in statuses), server.log[-6000:]
        assert "Traceback" not in server.log, server.log[-6000:]
