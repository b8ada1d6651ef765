"""The authentication page's samples (docs/examples/auth_*.py) run, against both databases.

No ``from __future__ import annotations`` here: FastAPI must resolve the route annotations below.
"""

from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from postkit import PostKit, PostKitSettings, User
from tests.support.api import serve_asgi as serve
from tests.support.examples import load_example as example

PASSWORD = "correct horse battery staple"


async def register(http: httpx.AsyncClient, email: str, prefix: str = "/api") -> None:
    response = await http.post(f"{prefix}/users", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201


async def test_host_routes_sample(settings_factory: Callable[..., PostKitSettings]) -> None:
    app = example("auth_host_routes").create_app(settings_factory())
    async with serve(app) as http:
        anonymous = await http.get("/api/dashboard")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert anonymous.json() == {"detail": "Not authenticated", "code": "NOT_AUTHENTICATED"}
        garbage = await http.get("/api/dashboard", headers={"Authorization": "Bearer nope"})
        assert garbage.status_code == 401
        assert garbage.json()["code"] == "INVALID_TOKEN"
        assert (await http.get("/api/greeting")).json() == {"greeting": "Hello, stranger"}

        await register(http, "host@example.com")
        pair = (
            await http.post(
                "/api/login", data={"username": "host@example.com", "password": PASSWORD}
            )
        ).json()
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        me = (await http.get("/api/users/me", headers=headers)).json()
        dashboard = await http.get("/api/dashboard", headers=headers)
        assert dashboard.json() == {"hello": me["username"]}
        greeting = await http.get("/api/greeting", headers=headers)
        assert greeting.json() == {"greeting": f"Welcome back, {me['username']}"}


async def test_host_routes_without_an_error_handler_still_answer_401(
    settings_factory: Callable[..., PostKitSettings],
) -> None:
    kit = PostKit(settings_factory())
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router)

    @app.get("/private")
    async def private(user: Annotated[User, Depends(kit.current_user)]) -> dict[str, int]:
        return {"id": user.id}

    async with serve(app) as http:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = await http.get("/private", headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert set(response.json()) == {"detail"}


async def test_client_sample(settings_factory: Callable[..., PostKitSettings]) -> None:
    app = example("auth_host_routes").create_app(settings_factory())
    client_module = example("auth_client")
    async with serve(app) as http:
        await register(http, "client@example.com")
        client = client_module.PostkitClient(http)
        await client.login("client@example.com", PASSWORD)
        assert (await client.get("/users/me")).json()["email"] == "client@example.com"

        first_refresh_token = client.refresh_token
        client.access_token = "expired"  # as if it had run out
        response = await client.get("/users/me")
        assert response.status_code == 200
        assert client.refresh_token != first_refresh_token

        await client.logout()
        assert client.access_token == ""
        stale = await http.post("/api/token/refresh", json={"refresh_token": first_refresh_token})
        assert stale.status_code == 401


async def test_client_sample_logout_everywhere(
    settings_factory: Callable[..., PostKitSettings],
) -> None:
    app = example("auth_host_routes").create_app(settings_factory())
    client_module = example("auth_client")
    async with serve(app) as http:
        await register(http, "everywhere@example.com")
        phone, laptop = client_module.PostkitClient(http), client_module.PostkitClient(http)
        for device in (phone, laptop):
            await device.login("everywhere@example.com", PASSWORD)
        await phone.logout(everywhere=True)
        # The laptop's access token is refused, and so is its refresh token: log in again.
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await laptop.get("/users/me")
        assert refused.value.response.json()["code"] == "INVALID_REFRESH_TOKEN"


def _test_settings(settings_factory: Callable[..., PostKitSettings]) -> dict[str, Any]:
    base = settings_factory()
    return {
        "_env_file": None,
        "database_url": base.database_url,
        "bcrypt_rounds": 4,
        "discover_plugins": False,
    }


async def test_key_samples(settings_factory: Callable[..., PostKitSettings]) -> None:
    keys = example("auth_keys")
    common = _test_settings(settings_factory)
    old_secret = "the-old-secret-that-is-long-enough-0123456789"
    new_secret = "the-new-secret-that-is-long-enough-9876543210"

    async with serve(
        example("auth_host_routes").create_app(PostKitSettings(secret_key=old_secret, **common))
    ) as http:
        await register(http, "keys@example.com")
        old_pair = (
            await http.post(
                "/api/login", data={"username": "keys@example.com", "password": PASSWORD}
            )
        ).json()
    old_headers = {"Authorization": f"Bearer {old_pair['access_token']}"}

    rotated = keys.rotated_settings(new_secret, old_secret, **common)
    async with serve(example("auth_host_routes").create_app(rotated)) as http:
        assert (await http.get("/api/dashboard", headers=old_headers)).status_code == 200

    private_pem, public_pem = keys.es256_key_pair()
    asymmetric = keys.es256_settings(private_pem, public_pem, **common)
    async with serve(example("auth_host_routes").create_app(asymmetric)) as http:
        # Another algorithm, another key: the old HMAC tokens are refused ...
        assert (await http.get("/api/dashboard", headers=old_headers)).status_code == 401
        # ... and new logins are signed with the private key.
        pair = (
            await http.post(
                "/api/login", data={"username": "keys@example.com", "password": PASSWORD}
            )
        ).json()
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        assert (await http.get("/api/dashboard", headers=headers)).status_code == 200


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_one_app_served_by_two_event_loops_in_turn(
    settings_factory: Callable[..., PostKitSettings],
) -> None:
    # Starlette's TestClient runs each `with` block on its own event loop: a host's test suite
    # does exactly this, and logins (hashing threads, pooled connections) must survive it.
    from fastapi.testclient import TestClient

    app = example("auth_host_routes").create_app(settings_factory())
    for round_ in range(2):
        with TestClient(app) as http:
            email = f"loop{round_}@example.com"
            body = {"email": email, "password": PASSWORD}
            assert http.post("/api/users", json=body).status_code == 201
            logins = [
                http.post("/api/login", data={"username": email, "password": PASSWORD})
                for _ in range(2)
            ]
            assert [response.status_code for response in logins] == [200, 200]
            token = logins[-1].json()["access_token"]
            dashboard = http.get("/api/dashboard", headers={"Authorization": f"Bearer {token}"})
            assert dashboard.status_code == 200
