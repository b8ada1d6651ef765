"""The account lifecycle samples of the authentication page run, against both databases.

No ``from __future__ import annotations``: FastAPI must resolve the sample's annotations.
"""

from collections.abc import Callable

from postkit import PostKitSettings
from tests.docs.test_auth_docs import PASSWORD, register
from tests.support.api import serve_asgi as serve
from tests.support.examples import load_example as example


async def login(http, login: str) -> dict[str, str]:
    response = await http.post("/api/login", data={"username": login, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_suspending_from_host_code_ends_sessions_for_good(
    settings_factory: Callable[..., PostKitSettings],
) -> None:
    app = example("auth_deactivation").create_app(settings_factory())
    async with serve(app) as http:
        admin_created = await http.post(
            "/api/users",
            json={"email": "root@example.com", "password": PASSWORD, "username": "admin"},
        )
        assert admin_created.status_code == 201
        await register(http, "ada@example.com")
        admin = await login(http, "admin")
        ada = await login(http, "ada@example.com")
        ada_id = (await http.get("/api/users/me", headers=ada)).json()["id"]

        refused = await http.post(f"/api/admin/users/{ada_id}/suspend", headers=ada)
        assert refused.status_code == 403
        suspended = await http.post(f"/api/admin/users/{ada_id}/suspend", headers=admin)
        assert suspended.status_code == 204
        assert (await http.get("/api/users/me", headers=ada)).status_code == 401
        login_refused = await http.post(
            "/api/login", data={"username": "ada@example.com", "password": PASSWORD}
        )
        assert login_refused.status_code == 401

        restored = await http.post(f"/api/admin/users/{ada_id}/restore", headers=admin)
        assert restored.status_code == 204
        assert (await http.get("/api/users/me", headers=ada)).status_code == 401  # stays dead
        again = await login(http, "ada@example.com")
        assert (await http.get("/api/users/me", headers=again)).status_code == 200

        unknown = await http.post("/api/admin/users/999999/suspend", headers=admin)
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "USER_NOT_FOUND"
