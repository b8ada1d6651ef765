"""Testing a host app that mounts postkit: a fresh SQLite file per test, cheap bcrypt, no mocks."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from host_app import create_app

from postkit import PostKitSettings

PASSWORD = "a password long enough"  # noqa: S105 - a test account


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = PostKitSettings(
        database_url=f"sqlite:///{tmp_path / 'test.db'}",
        secret_key="a-test-secret-that-is-at-least-32-bytes-long",  # noqa: S106
        bcrypt_rounds=4,  # the minimum: hashing stays fast in tests
        auto_migrate=True,  # the lifespan creates the tables
        discover_plugins=False,  # only the plugins the test passes
    )
    with TestClient(create_app(settings)) as client:  # runs the lifespan
        yield client


def login(client: TestClient, email: str) -> dict[str, str]:
    """Register ``email`` and return the headers of a logged-in request."""
    created = client.post("/api/users", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    token = client.post("/api/login", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_greeting_needs_a_token(client: TestClient) -> None:
    response = client.get("/api/greeting")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_greeting_names_the_user(client: TestClient) -> None:
    headers = login(client, "grace@example.com")
    me = client.get("/api/users/me", headers=headers).json()
    response = client.get("/api/greeting", headers=headers)
    assert response.json() == {"greeting": f"Welcome back, {me['username']}"}


def test_a_post_shows_up_in_the_feed(client: TestClient) -> None:
    headers = login(client, "linus@example.com")
    created = client.post(
        "/api/posts", json={"title": "Tested", "content": "through HTTP"}, headers=headers
    )
    assert created.status_code == 201, created.text
    feed = client.get("/api/posts", headers=headers).json()
    assert [post["title"] for post in feed] == ["Tested"]
