"""Every way a token stops working takes effect on the very next read in another worker.

Two uvicorn processes serve the same database. Worker B has already answered reads with the
token (so it remembers the token's verified signature); worker A ends the token's session, or
the account's; B's next read with it answers 401, for the feed and for one post alike. On
SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from postkit.migrations import upgrade
from tests.support.api import TEST_PASSWORD
from tests.support.databases import create_postgres_database, drop_postgres_database, run_sql
from tests.support.ports import free_port
from tests.support.servers import LiveProcess, serve, server_env, uvicorn_command

pytestmark = pytest.mark.slow  # real server processes


@pytest.fixture(scope="module")
def workers(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveProcess, LiveProcess, str]]:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('revocation') / 'shared.db'}"
    else:
        url = create_postgres_database("postkit_revocation")
    try:
        upgrade(url)
        env = server_env(url, public_reads=False, rate_limits_enabled=False)
        logs: Path = tmp_path_factory.mktemp("revocation-logs")
        port_a, port_b = free_port(), free_port()
        with (
            serve(uvicorn_command(port_a), env=env, log_dir=logs, port=port_a) as a,
            serve(uvicorn_command(port_b), env=env, log_dir=logs, port=port_b) as b,
        ):
            yield a, b, url
            for server in (a, b):
                assert "Traceback" not in server.log, server.log[-6000:]
    finally:
        if backend != "sqlite":
            drop_postgres_database(url)


class Account:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.name = f"r{uuid.uuid4().hex[:10]}"
        self.password = TEST_PASSWORD
        created = http.post(
            "/users",
            json={
                "email": f"{self.name}@example.com",
                "username": self.name,
                "password": self.password,
            },
        )
        assert created.status_code == 201, created.text
        self.id = created.json()["id"]

    def login(self) -> dict[str, str]:
        answer = self.http.post("/login", data={"username": self.name, "password": self.password})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def reads(server: LiveProcess, headers: dict[str, str], post_id: int) -> list[int]:
    """The status of a feed page and of one post read on ``server`` with ``headers``."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        return [
            http.get("/posts?limit=5", headers=headers).status_code,
            http.get(f"/posts/{post_id}", headers=headers).status_code,
        ]


@pytest.fixture
def setup(workers: tuple[LiveProcess, LiveProcess, str]) -> Iterator[tuple]:
    a, b, url = workers
    with httpx.Client(base_url=a.url, timeout=30) as http:
        account = Account(http)
        headers = account.login()
        created = http.post("/posts", json={"title": "t", "content": "c"}, headers=headers)
        assert created.status_code == 201, created.text
        yield a, b, url, account, headers, created.json()["id"]


def test_logout(setup: tuple) -> None:
    a, b, _url, _account, headers, post_id = setup
    assert reads(b, headers, post_id) == [200, 200]
    with httpx.Client(base_url=a.url) as http:
        assert http.post("/logout", headers=headers).status_code == 204
    assert reads(b, headers, post_id) == [401, 401]


def test_logout_everywhere(setup: tuple) -> None:
    a, b, _url, account, headers, post_id = setup
    other = account.login()
    assert reads(b, other, post_id) == [200, 200]
    with httpx.Client(base_url=a.url) as http:
        assert http.post("/logout/all", headers=headers).status_code == 204
    assert reads(b, other, post_id) == [401, 401]
    assert reads(b, headers, post_id) == [401, 401]


def test_ending_one_session_from_the_session_list(setup: tuple) -> None:
    a, b, _url, account, headers, post_id = setup
    other = account.login()
    assert reads(b, other, post_id) == [200, 200]
    with httpx.Client(base_url=a.url) as http:
        listed = http.get("/sessions", headers=headers).json()
        (ended,) = [s["id"] for s in listed if not s["current"]]
        assert http.delete(f"/sessions/{ended}", headers=headers).status_code == 204
    assert reads(b, other, post_id) == [401, 401]
    assert reads(b, headers, post_id) == [200, 200]


def test_password_change_ends_the_other_sessions(setup: tuple) -> None:
    a, b, _url, account, headers, post_id = setup
    other = account.login()
    assert reads(b, other, post_id) == [200, 200]
    with httpx.Client(base_url=a.url) as http:
        changed = http.patch(
            "/users/me",
            json={"password": "another-long-password-1", "current_password": account.password},
            headers=headers,
        )
        assert changed.status_code == 200, changed.text
    assert reads(b, other, post_id) == [401, 401]
    assert reads(b, headers, post_id) == [200, 200]  # the session that changed it stays


def test_deactivation_in_the_database(setup: tuple) -> None:
    _a, b, url, account, headers, post_id = setup
    assert reads(b, headers, post_id) == [200, 200]
    run_sql(url, f"UPDATE postkit_users SET is_active = false WHERE id = {int(account.id)}")
    assert reads(b, headers, post_id) == [401, 401]


def test_account_deletion(setup: tuple) -> None:
    a, b, _url, account, headers, post_id = setup
    reader = account.login()
    assert reads(b, reader, post_id) == [200, 200]
    with httpx.Client(base_url=a.url) as http:
        deleted = http.request(
            "DELETE", "/users/me", json={"current_password": account.password}, headers=headers
        )
        assert deleted.status_code == 204, deleted.text
    assert reads(b, reader, post_id)[0] == 401
