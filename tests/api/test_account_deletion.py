"""Deleting an account (DELETE /users/me), its export (GET /users/me/export), and deactivation
from host code, through HTTP and the Python API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from postkit import hookimpl
from postkit.errors import PostKitError
from postkit.models import AuthSession, Post, RefreshToken, User
from postkit.schemas.accounts import AccountExport
from postkit.services import accounts as accounts_module
from tests.support.api import TEST_PASSWORD, make_post


async def delete_me(client: Any, user: Any, password: str | None = None) -> Any:
    return await client.request(
        "DELETE",
        "/users/me",
        json={"current_password": password if password is not None else user.password},
        headers=user.headers,
    )


async def vote(client: Any, user: Any, post_id: int) -> None:
    response = await client.post("/vote", json={"post_id": post_id, "dir": 1}, headers=user.headers)
    assert response.status_code == 201, response.text


async def post_votes(client: Any, reader: Any, post_id: int) -> int:
    response = await client.get(f"/posts/{post_id}", headers=reader.headers)
    assert response.status_code == 200, response.text
    votes: int = response.json()["votes"]
    return votes


async def test_wrong_password_is_refused_and_changes_nothing(client, new_user):
    user = await new_user(client)
    refused = await delete_me(client, user, password="not the password")
    assert refused.status_code == 403
    assert refused.json()["code"] == "WRONG_CURRENT_PASSWORD"
    assert (await client.get("/users/me", headers=user.headers)).status_code == 200


async def test_missing_password_is_a_validation_error(client, new_user):
    user = await new_user(client)
    response = await client.request("DELETE", "/users/me", json={}, headers=user.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
    anonymous = await client.request("DELETE", "/users/me", json={"current_password": "x"})
    assert anonymous.status_code == 401


async def test_wrong_passwords_are_throttled_like_logins(make_client, new_user):
    client = await make_client(login_max_failures=2)
    user = await new_user(client)
    for _ in range(2):
        assert (await delete_me(client, user, password="wrong password")).status_code == 403
    throttled = await delete_me(client, user)  # even the right one, until the window passes
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "TOO_MANY_ATTEMPTS"
    assert int(throttled.headers["retry-after"]) >= 1
    assert (await client.get("/users/me", headers=user.headers)).status_code == 200


async def test_deletion_withdraws_votes_deletes_posts_and_ends_every_token(client, new_user):
    leaving = await new_user(client)
    other = await new_user(client)
    third = await new_user(client)
    others_post = await make_post(client, other)
    own_post = await make_post(client, leaving)
    await vote(client, leaving, others_post["id"])
    await vote(client, third, others_post["id"])
    await vote(client, other, own_post["id"])
    second_login = await client.post(
        "/login", data={"username": leaving.email, "password": leaving.password}
    )
    assert second_login.status_code == 200
    assert await post_votes(client, other, others_post["id"]) == 2

    deleted = await delete_me(client, leaving)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""

    # The other post's total lost exactly the deleted account's vote.
    assert await post_votes(client, other, others_post["id"]) == 1
    assert (await client.get(f"/posts/{own_post['id']}", headers=other.headers)).status_code == 404
    assert (await client.get(f"/users/{leaving.id}", headers=other.headers)).status_code == 404
    for token in (leaving.access_token, second_login.json()["access_token"]):
        me = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
        assert me.json()["code"] == "INVALID_TOKEN"
    for refresh in (leaving.refresh_token, second_login.json()["refresh_token"]):
        refreshed = await client.post("/token/refresh", json={"refresh_token": refresh})
        assert refreshed.status_code == 401
        assert refreshed.json()["code"] == "INVALID_REFRESH_TOKEN"
    login = await client.post("/login", data={"username": leaving.email, "password": TEST_PASSWORD})
    assert login.status_code == 401
    async with client.kit.db.sessionmaker() as session:
        assert await session.get(User, leaving.id) is None
        sessions = await session.scalars(
            select(AuthSession.id).where(AuthSession.user_id == leaving.id)
        )
        assert sessions.all() == []
        assert (await session.scalars(select(RefreshToken.token_hash))).all() != []  # others'
        owned = await session.scalars(select(Post.id).where(Post.owner_id == leaving.id))
        assert owned.all() == []


async def test_anonymised_posts_stay_under_the_deleted_placeholder(make_client, new_user):
    client = await make_client(account_deletion_posts="anonymize")
    first = await new_user(client)
    second = await new_user(client)
    reader = await new_user(client)
    published = await make_post(client, first, title="Stays")
    draft = await make_post(client, first, title="Private", published=False)
    later = await make_post(client, second, title="Also stays")
    await vote(client, reader, published["id"])
    await vote(client, first, later["id"])
    before = (await client.get(f"/posts/{published['id']}", headers=reader.headers)).json()

    assert (await delete_me(client, first)).status_code == 204
    assert (await delete_me(client, second)).status_code == 204

    kept = (await client.get(f"/posts/{published['id']}", headers=reader.headers)).json()
    assert kept["title"] == "Stays"
    assert kept["votes"] == 1  # votes others cast on it stay
    assert kept["owner"]["username"] == "[deleted]"
    assert kept["updated_at"] == before["updated_at"]  # reassigning is no edit
    also = (await client.get(f"/posts/{later['id']}", headers=reader.headers)).json()
    assert also["owner"] == kept["owner"]  # one placeholder for every deleted account
    assert also["votes"] == 0  # the deleted account's vote was withdrawn
    assert (await client.get(f"/posts/{draft['id']}", headers=reader.headers)).status_code == 404
    feed = (await client.get("/posts", headers=reader.headers)).json()
    assert {post["title"] for post in feed} == {"Stays", "Also stays"}

    placeholder = kept["owner"]["id"]
    profile = await client.get(f"/users/{placeholder}", headers=reader.headers)
    assert profile.status_code == 404
    as_placeholder = await client.post("/login", data={"username": "[deleted]", "password": "!"})
    assert as_placeholder.status_code == 401
    assert as_placeholder.json()["code"] == "INVALID_CREDENTIALS"
    changed = await client.put(
        f"/posts/{published['id']}",
        json={"title": "Hijacked", "content": "x"},
        headers=reader.headers,
    )
    assert changed.status_code == 403
    async with client.kit.db.sessionmaker() as session:
        assert await session.get(Post, draft["id"]) is None


async def test_a_deleted_accounts_id_and_tokens_never_come_back(client, new_user):
    # A is the newest account, so SQLite without AUTOINCREMENT would give its id to B.
    first = await new_user(client)
    assert (await delete_me(client, first)).status_code == 204
    second = await new_user(client)
    assert second.id > first.id
    assert (await client.get("/users/me", headers=second.headers)).json()["id"] == second.id
    old = await client.get("/users/me", headers=first.headers)
    assert old.status_code == 401
    assert old.json()["code"] == "INVALID_TOKEN"
    refreshed = await client.post("/token/refresh", json={"refresh_token": first.refresh_token})
    assert refreshed.status_code == 401


class Guard:
    """Refuses to delete accounts that own a post titled "Keep", deletes the host's rows of the
    others inside the deletion's transaction, and records what was deleted."""

    def __init__(self) -> None:
        self.deleted: list[tuple[int, str, str]] = []
        self.saw_session = False

    @hookimpl
    async def before_account_delete(self, user, session):
        keep = await session.scalar(
            select(Post.id).where(Post.owner_id == user.id, Post.title == "Keep")
        )
        if keep is not None:
            raise PostKitError("Hand your posts over first", status_code=409, code="OWNS_POSTS")
        self.saw_session = session.in_transaction()

    @hookimpl
    def after_account_delete(self, user_id, email, username):
        self.deleted.append((user_id, email, username))


async def test_before_account_delete_may_refuse_and_after_account_delete_reports(
    make_client, new_user
):
    guard = Guard()
    client = await make_client(plugins=[guard])
    keeper = await new_user(client)
    await make_post(client, keeper, title="Keep")
    refused = await delete_me(client, keeper)
    assert refused.status_code == 409
    assert refused.json() == {"detail": "Hand your posts over first", "code": "OWNS_POSTS"}
    assert (await client.get("/users/me", headers=keeper.headers)).status_code == 200
    assert guard.deleted == []

    leaving = await new_user(client)
    assert (await delete_me(client, leaving)).status_code == 204
    assert guard.saw_session
    assert guard.deleted == [(leaving.id, leaving.email, leaving.username)]


async def test_export_holds_profile_posts_drafts_and_votes(client, new_user, monkeypatch):
    monkeypatch.setattr(accounts_module, "_EXPORT_PAGE", 2)  # several pages of each
    user = await new_user(client)
    other = await new_user(client)
    titles = ["One", "Two", "Three"]
    for title in titles:
        await make_post(client, user, title=title)
    draft = await make_post(client, user, title="Draft", published=False)
    others = [await make_post(client, other) for _ in range(3)]
    for post in others:
        await vote(client, user, post["id"])
    await make_post(client, other, title="Not mine")

    response = await client.get("/users/me/export", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"].startswith("attachment;")
    document = AccountExport.model_validate_json(response.content)
    assert document.format_version == 1
    assert document.profile.id == user.id
    assert document.profile.email == user.email
    assert [post.title for post in document.posts] == [*titles, "Draft"]
    assert document.posts[-1].published is False
    assert document.posts[-1].id == draft["id"]
    assert [vote.post_id for vote in document.votes] == [post["id"] for post in others]
    assert all(vote.weight == 1 for vote in document.votes)

    empty = await new_user(client)
    blank = AccountExport.model_validate_json(
        (await client.get("/users/me/export", headers=empty.headers)).content
    )
    assert (blank.posts, blank.votes) == ([], [])
    assert (await client.get("/users/me/export")).status_code == 401


async def test_the_new_routes_are_documented(client):
    schema = (await client.get("/openapi.json")).json()
    delete = schema["paths"]["/users/me"]["delete"]
    assert {"204", "401", "403", "409", "422", "429"} <= set(delete["responses"])
    assert delete["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/AccountDelete"
    )
    export = schema["paths"]["/users/me/export"]["get"]["responses"]["200"]
    assert export["content"]["application/json"]["schema"]["$ref"].endswith("/AccountExport")
    sessions = schema["paths"]["/sessions"]["get"]["responses"]["200"]
    assert sessions["content"]["application/json"]["schema"]["items"]["$ref"].endswith(
        "/SessionPublic"
    )
    assert "404" in schema["paths"]["/sessions/{session_id}"]["delete"]["responses"]


async def test_the_new_routes_have_stable_names(make_client):
    client = await make_client(prefix="/v1")
    assert client.app.url_path_for("postkit:delete_me") == "/v1/users/me"
    assert client.app.url_path_for("postkit:export_me") == "/v1/users/me/export"
    assert client.app.url_path_for("postkit:list_sessions") == "/v1/sessions"
    assert client.app.url_path_for("postkit:end_session", session_id="abc") == "/v1/sessions/abc"


async def test_deactivation_from_host_code_ends_every_token_for_good(client, new_user):
    user = await new_user(client)
    async with client.kit.db.sessionmaker() as session:
        deactivated = await client.kit.accounts.deactivate(session, user_id=user.id)
        assert deactivated.is_active is False
    assert (await client.get("/users/me", headers=user.headers)).status_code == 401
    login = await client.post("/login", data={"username": user.email, "password": user.password})
    assert login.status_code == 401

    async with client.kit.db.sessionmaker() as session:
        reactivated = await client.kit.accounts.reactivate(session, user_id=user.id)
        assert reactivated.is_active is True
    # Reactivation revives no token issued before.
    assert (await client.get("/users/me", headers=user.headers)).status_code == 401
    refreshed = await client.post("/token/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 401
    fresh = await client.post("/login", data={"username": user.email, "password": user.password})
    assert fresh.status_code == 200
    headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert (await client.get("/users/me", headers=headers)).status_code == 200


async def test_reactivating_after_a_hand_made_deactivation_still_ends_old_tokens(client, new_user):
    user = await new_user(client)
    async with client.kit.db.sessionmaker() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.is_active = False
        await session.commit()
    async with client.kit.db.sessionmaker() as session:
        await client.kit.accounts.reactivate(session, user_id=user.id)
    assert (await client.get("/users/me", headers=user.headers)).status_code == 401


@pytest.mark.parametrize("user_id", [0, 999_999, 2**40])
async def test_deactivating_an_unknown_account_is_user_not_found(client, user_id):
    from postkit.errors import UserNotFound

    async with client.kit.db.sessionmaker() as session:
        with pytest.raises(UserNotFound):
            await client.kit.accounts.deactivate(session, user_id=user_id)
