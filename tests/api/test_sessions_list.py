"""The session list (GET /sessions, DELETE /sessions/{id}) and the sessions' maximum lifetime,
through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from postkit.models import AuthSession, RefreshToken, utcnow


async def login(client: Any, user: Any, user_agent: str | None = None) -> dict[str, Any]:
    headers = {"User-Agent": user_agent} if user_agent is not None else {}
    response = await client.post(
        "/login", data={"username": user.email, "password": user.password}, headers=headers
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def list_sessions(client: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/sessions", headers=headers)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()
    return listed


async def test_the_list_shows_live_sessions_newest_first(client, new_user):
    user = await new_user(client)
    laptop = await login(client, user, user_agent="Laptop/1.0")
    phone = await login(client, user, user_agent="P" * 400)
    other = await new_user(client)

    listed = await list_sessions(client, bearer(phone))
    assert len(listed) == 3  # new_user's own login, the laptop, the phone; not the other user's
    assert [entry["user_agent"] for entry in listed[:2]] == ["P" * 255, "Laptop/1.0"]
    assert [entry["current"] for entry in listed] == [True, False, False]
    assert listed[0]["created_at"] >= listed[1]["created_at"] >= listed[2]["created_at"]
    assert set(listed[0]) == {"id", "created_at", "last_used_at", "user_agent", "current"}
    from_laptop = await list_sessions(client, bearer(laptop))
    assert [entry["current"] for entry in from_laptop] == [False, True, False]
    assert len(await list_sessions(client, other.headers)) == 1

    await client.post("/logout", headers=bearer(laptop))
    assert len(await list_sessions(client, bearer(phone))) == 2
    assert (await client.get("/sessions")).status_code == 401


async def test_last_used_moves_on_refresh_not_on_requests(client, new_user):
    user = await new_user(client)
    [before] = await list_sessions(client, user.headers)
    assert before["last_used_at"] == before["created_at"]
    for _ in range(3):
        assert (await client.get("/users/me", headers=user.headers)).status_code == 200
    [unchanged] = await list_sessions(client, user.headers)
    assert unchanged["last_used_at"] == before["last_used_at"]

    refreshed = await client.post("/token/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 200
    [after] = await list_sessions(client, bearer(refreshed.json()))
    assert after["id"] == before["id"]
    assert after["last_used_at"] > before["last_used_at"]


async def test_ending_one_session_signs_only_that_one_out(client, new_user):
    user = await new_user(client)
    lost = await login(client, user, user_agent="Lost phone")
    listed = await list_sessions(client, user.headers)
    lost_id = next(entry["id"] for entry in listed if entry["user_agent"] == "Lost phone")

    ended = await client.delete(f"/sessions/{lost_id}", headers=user.headers)
    assert ended.status_code == 204
    assert (await client.get("/users/me", headers=bearer(lost))).status_code == 401
    refreshed = await client.post("/token/refresh", json={"refresh_token": lost["refresh_token"]})
    assert refreshed.status_code == 401
    assert (await client.get("/users/me", headers=user.headers)).status_code == 200
    assert [entry["id"] for entry in await list_sessions(client, user.headers)] != [lost_id]
    assert lost_id not in {entry["id"] for entry in await list_sessions(client, user.headers)}

    again = await client.delete(f"/sessions/{lost_id}", headers=user.headers)
    assert again.status_code == 404
    assert again.json()["code"] == "SESSION_NOT_FOUND"


async def test_another_accounts_session_is_not_found(client, new_user):
    owner = await new_user(client)
    intruder = await new_user(client)
    [owner_session] = await list_sessions(client, owner.headers)
    for session_id in (owner_session["id"], "no-such-session", "x" * 64):
        response = await client.delete(f"/sessions/{session_id}", headers=intruder.headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "Session not found", "code": "SESSION_NOT_FOUND"}
    assert (await client.get("/users/me", headers=owner.headers)).status_code == 200
    too_long = await client.delete(f"/sessions/{'x' * 65}", headers=intruder.headers)
    assert too_long.status_code == 422


async def test_ending_the_current_session_is_a_logout(client, new_user):
    user = await new_user(client)
    [current] = await list_sessions(client, user.headers)
    assert (
        await client.delete(f"/sessions/{current['id']}", headers=user.headers)
    ).status_code == 204
    assert (await client.get("/users/me", headers=user.headers)).status_code == 401


async def age_sessions(client: Any, user_id: int, by: timedelta) -> None:
    async with client.kit.db.sessionmaker() as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id)
            .values(created_at=utcnow() - by)
        )
        await session.commit()


async def test_a_session_past_its_maximum_lifetime_ends(make_client, new_user):
    client = await make_client(session_max_lifetime=timedelta(days=7))
    user = await new_user(client)
    old = await login(client, user)
    # Logged in just under a week ago: still alive, and refreshing works.
    await age_sessions(client, user.id, timedelta(days=7) - timedelta(minutes=5))
    refreshed = await client.post("/token/refresh", json={"refresh_token": old["refresh_token"]})
    assert refreshed.status_code == 200
    assert (await client.get("/users/me", headers=bearer(refreshed.json()))).status_code == 200

    await age_sessions(client, user.id, timedelta(days=7, seconds=1))
    # Access tokens of the expired sessions stop working at once...
    me = await client.get("/users/me", headers=bearer(refreshed.json()))
    assert me.status_code == 401
    assert me.json()["code"] == "INVALID_TOKEN"
    # ...and refreshing, however recently it happened, answers 401.
    late = await client.post(
        "/token/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}
    )
    assert late.status_code == 401
    assert late.json()["code"] == "INVALID_REFRESH_TOKEN"

    fresh = await login(client, user)
    listed = await list_sessions(client, bearer(fresh))
    assert [entry["current"] for entry in listed] == [True]  # the expired ones are not listed
    async with client.kit.db.sessionmaker() as session:
        revoked = await session.scalars(
            select(AuthSession.revoked_at).where(AuthSession.user_id == user.id)
        )
        # new_user's login, the refreshed one (ended by the refused refresh), the fresh one.
        assert sorted(value is None for value in revoked.all()) == [False, True, True]


async def test_refresh_tokens_never_outlive_their_session(make_client, new_user):
    client = await make_client(
        session_max_lifetime=timedelta(hours=1), refresh_token_ttl=timedelta(days=30)
    )
    await new_user(client)
    async with client.kit.db.sessionmaker() as session:
        [expires_at] = (await session.scalars(select(RefreshToken.expires_at))).all()
    assert expires_at <= utcnow() + timedelta(hours=1)
