"""The HTTP API from a test: a client bound to one kit, accounts and posts made through it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from postkit import PostKit

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
TEST_PASSWORD = "correct horse battery staple"


@asynccontextmanager
async def serve_asgi(
    app: FastAPI, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Start ``app`` (its lifespan) and yield an httpx client talking to it in process.

    ``raise_app_exceptions=False`` lets a test see a real 500 instead of the exception.
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@dataclass
class KitClient:
    """An httpx client bound to one app built around one kit."""

    http: httpx.AsyncClient
    kit: PostKit
    app: FastAPI

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)


@dataclass
class TestUser:
    """An account created through the API, logged in."""

    __test__ = False  # not a test class, whatever module imports it

    id: int
    email: str
    username: str
    password: str
    access_token: str
    refresh_token: str
    headers: dict[str, str] = field(default_factory=dict)


async def sign_up(
    client: KitClient | httpx.AsyncClient,
    *,
    email: str | None = None,
    username: str | None = None,
    password: str = TEST_PASSWORD,
    prefix: str = "",
    login: str | None = None,
) -> TestUser:
    """Register an account through the API and log it in (as ``login``, by default the email)."""
    suffix = uuid.uuid4().hex[:8]
    email = email or f"user_{suffix}@example.com"
    body: dict[str, Any] = {"email": email, "password": password}
    body["username"] = username or f"user_{suffix}"
    created = await client.post(f"{prefix}/users", json=body)
    assert created.status_code == 201, created.text
    user = created.json()
    logged_in = await client.post(
        f"{prefix}/login", data={"username": login or email, "password": password}
    )
    assert logged_in.status_code == 200, logged_in.text
    tokens = logged_in.json()
    return TestUser(
        id=user["id"],
        email=user["email"],
        username=user["username"],
        password=password,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )


async def register(client: httpx.AsyncClient, name: str | None = None) -> TestUser:
    """An account named ``name`` (or a random name), logged in by its username."""
    name = name or f"u{uuid.uuid4().hex[:10]}"
    return await sign_up(client, email=f"{name}@example.com", username=name, login=name)


async def make_post(client: Any, user: TestUser, **fields: Any) -> dict[str, Any]:
    """Create a post through the API as ``user`` (title and content defaulted); return its JSON."""
    body = {"title": "A title", "content": "Some content"} | fields
    response = await client.post("/posts", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def make_comment(
    client: Any, user: TestUser, post_id: int, body: str = "A comment", **fields: Any
) -> dict[str, Any]:
    """Comment on ``post_id`` through the API as ``user`` (a reply with ``parent_id``); return
    its JSON."""
    response = await client.post(
        f"/posts/{post_id}/comments", json={"body": body, **fields}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
