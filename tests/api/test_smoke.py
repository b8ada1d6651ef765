"""The whole stack once, end to end: register, log in, read the account back."""

from __future__ import annotations


async def test_register_login_and_me(client, new_user):
    user = await new_user(client)
    response = await client.get("/users/me", headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.id
    assert body["email"] == user.email
    assert "password_hash" not in body


async def test_me_without_token_is_401(client):
    response = await client.get("/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated", "code": "NOT_AUTHENTICATED"}
