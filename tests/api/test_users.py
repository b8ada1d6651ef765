"""Accounts over HTTP: registration, the own account, changes to it, public profiles."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from postkit import PostKitError, User, hookimpl
from postkit.security import PasswordHasher

NEW_PASSWORD = "a brand new passphrase"


async def register(client, **body):
    return await client.post("/users", json=body)


async def login(client, login, password):
    return await client.post("/login", data={"username": login, "password": password})


# --- POST /users --------------------------------------------------------------------------------


async def test_register_returns_the_own_view(client):
    response = await register(
        client, email="  Alice@Example.COM ", password="long enough", username="Alice_1"
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "username", "created_at", "email_verified_at"}
    assert body["email_verified_at"] is None
    assert body["email"] == "alice@example.com"
    assert body["username"] == "alice_1"


async def test_generated_username_does_not_reveal_the_email(client):
    response = await register(client, email="carol.secret@example.com", password="long enough")
    assert response.status_code == 201
    username = response.json()["username"]
    assert "carol" not in username
    assert "secret" not in username
    assert "example" not in username
    # and it logs in like a chosen one
    assert (await login(client, username, "long enough")).status_code == 200


@pytest.mark.parametrize("email", ["dave@example.com", "DAVE@example.com", "Dave@Example.Com"])
async def test_duplicate_email_is_409_whatever_the_case(client, email):
    assert (await register(client, email="dave@example.com", password="long enough")).is_success
    response = await register(client, email=email, password="long enough")
    assert response.status_code == 409
    assert response.json()["code"] == "EMAIL_TAKEN"


@pytest.mark.parametrize("clash", ["email", "username"])
async def test_concurrent_registrations_of_one_name_create_one_account(client, clash):
    def body(i: int) -> dict[str, str]:
        if clash == "email":
            return {"email": "race@example.com", "password": "long enough", "username": f"r{i}xx"}
        return {"email": f"race{i}@example.com", "password": "long enough", "username": "racer"}

    responses = await asyncio.gather(*(register(client, **body(i)) for i in range(6)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409, 409, 409]
    codes = {response.json()["code"] for response in responses if response.status_code == 409}
    assert codes == {"EMAIL_TAKEN" if clash == "email" else "USERNAME_TAKEN"}
    async with client.kit.db.sessionmaker() as session:
        assert len((await session.scalars(select(User))).all()) == 1


async def test_duplicate_username_is_409(client):
    first = await register(client, email="e1@example.com", password="long enough", username="eve")
    assert first.status_code == 201
    response = await register(
        client, email="e2@example.com", password="long enough", username="EVE"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "USERNAME_TAKEN"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "long enough"}, "email"),
        ({"email": "not-an-email", "password": "long enough"}, "email"),
        ({"email": "f@example.com"}, "password"),
        ({"email": "f@example.com", "password": "short"}, "password"),
        ({"email": "f@example.com", "password": "x" * 4097}, "password"),
        ({"email": "f@example.com", "password": "long enough", "username": "a@b"}, "username"),
        ({"email": "f@example.com", "password": "long enough", "username": "ab"}, "username"),
        ({"email": "f@example.com", "password": "long enough", "is_admin": True}, "is_admin"),
    ],
)
async def test_invalid_registration_is_422_naming_the_field(client, body, field):
    response = await register(client, **body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["code"] == "VALIDATION_ERROR"
    assert [error["loc"][-1] for error in payload["detail"]] == [field]


async def test_reserved_test_domain_is_accepted_other_special_names_are_not(client):
    accepted = await register(client, email="QA@Staging.Test", password="long enough")
    assert accepted.status_code == 201
    assert accepted.json()["email"] == "qa@staging.test"
    refused = await register(client, email="qa@printer.local", password="long enough")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "email"]


async def test_password_minimum_follows_settings_and_the_schema_says_so(make_client):
    client = await make_client(password_min_length=12)
    short = await register(client, email="g@example.com", password="elevenchars")
    assert short.status_code == 422
    assert (await register(client, email="g@example.com", password="twelve chars")).is_success
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert schema["UserCreate"]["properties"]["password"]["minLength"] == 12


async def test_long_passwords_are_accepted_and_never_truncated(client):
    password = "".join(chr(0x41 + i % 26) for i in range(299)) + "!"
    assert len(password) == 300
    created = await register(client, email="h@example.com", password=password)
    assert created.status_code == 201
    assert (await login(client, "h@example.com", password)).status_code == 200
    # The same password with only its last character changed: would match if truncated.
    assert (await login(client, "h@example.com", password[:-1] + "?")).status_code == 401
    # And differing only past byte 72 (where plain bcrypt stops reading).
    assert (await login(client, "h@example.com", password[:100])).status_code == 401


async def test_registration_stores_a_bcrypt_sha256_hash(client):
    await register(client, email="i@example.com", password="long enough")
    async with client.kit.db.sessionmaker() as session:
        stored = await session.scalar(select(User.password_hash))
    assert stored is not None
    assert stored.startswith("$bcrypt-sha256$")
    assert "long enough" not in stored


# --- Registration hooks -------------------------------------------------------------------------


class ClosedDomain:
    """Refuses registrations from one domain and records what it was shown."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, object]]] = []

    @hookimpl
    def validate_registration(self, email: str, username: str, data: dict[str, object]) -> None:
        self.seen.append((email, username, dict(data)))
        if email.endswith("@closed.example"):
            raise PostKitError(
                "Registrations from this domain are closed",
                status_code=403,
                code="REGISTRATION_CLOSED",
            )


class Welcome:
    def __init__(self) -> None:
        self.welcomed: list[tuple[int, str]] = []

    @hookimpl
    async def after_user_register(self, user: User) -> None:
        self.welcomed.append((user.id, user.email))


async def test_validate_registration_can_refuse(make_client):
    rules = ClosedDomain()
    welcome = Welcome()
    client = await make_client(plugins=[rules, welcome])
    refused = await register(client, email="Jo@Closed.example", password="long enough")
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Registrations from this domain are closed",
        "code": "REGISTRATION_CLOSED",
    }
    # The hook saw the normalised email, the generated username, and no password.
    email, username, data = rules.seen[0]
    assert email == "jo@closed.example"
    assert username.startswith("user_")
    assert "password" not in data
    assert welcome.welcomed == []
    async with client.kit.db.sessionmaker() as session:
        assert (await session.scalars(select(User))).all() == []
    accepted = await register(client, email="jo@open.example", password="long enough")
    assert accepted.status_code == 201
    assert welcome.welcomed == [(accepted.json()["id"], "jo@open.example")]


class CountingHasher(PasswordHasher):
    """postkit's hasher, counting the hashes it computes."""

    def __init__(self, rounds: int) -> None:
        super().__init__(rounds)
        self.hashed = 0

    async def hash(self, password: str) -> str:
        self.hashed += 1
        return await super().hash(password)


async def test_validate_registration_runs_before_the_password_is_hashed(make_client):
    client = await make_client(plugins=[ClosedDomain()])
    client.kit.accounts.passwords = hasher = CountingHasher(4)
    refused = await register(client, email="x@closed.example", password="long enough")
    assert refused.status_code == 403
    assert hasher.hashed == 0
    assert (await register(client, email="x@open.example", password="long enough")).is_success
    assert hasher.hashed == 1


async def test_after_user_register_failure_does_not_undo_the_account(make_client):
    class Broken:
        @hookimpl
        def after_user_register(self, user: User) -> None:
            raise RuntimeError("mail server down")

    client = await make_client(plugins=[Broken()])
    response = await register(client, email="k@example.com", password="long enough")
    assert response.status_code == 201
    assert (await login(client, "k@example.com", "long enough")).status_code == 200


# --- GET /users/me and PATCH /users/me ----------------------------------------------------------


async def test_me_is_the_own_view_without_any_hash(client, new_user):
    user = await new_user(client)
    body = (await client.get("/users/me", headers=user.headers)).json()
    assert body == {
        "id": user.id,
        "email": user.email,
        "username": user.username,
        "created_at": body["created_at"],
        "email_verified_at": None,
    }


async def test_change_username(client, new_user):
    user = await new_user(client)
    response = await client.patch("/users/me", json={"username": "New_Name"}, headers=user.headers)
    assert response.status_code == 200
    assert response.json()["username"] == "new_name"
    assert (await login(client, "new_name", user.password)).status_code == 200
    # Setting the same name again is not a conflict.
    same = await client.patch("/users/me", json={"username": "new_name"}, headers=user.headers)
    assert same.status_code == 200


async def test_change_username_to_a_taken_one_is_409(client, new_user):
    alice = await new_user(client)
    bob = await new_user(client)
    response = await client.patch(
        "/users/me", json={"username": bob.username.upper()}, headers=alice.headers
    )
    assert response.status_code == 409
    assert response.json()["code"] == "USERNAME_TAKEN"


async def test_empty_patch_changes_nothing(client, new_user):
    user = await new_user(client)
    response = await client.patch("/users/me", json={}, headers=user.headers)
    assert response.status_code == 200
    assert response.json()["username"] == user.username


@pytest.mark.parametrize(
    "body",
    [
        {"email": "x@example.com"},
        {"password": "short", "current_password": "whatever"},
        {"username": "no spaces"},
    ],
)
async def test_invalid_patch_is_422(client, new_user, body):
    user = await new_user(client)
    response = await client.patch("/users/me", json=body, headers=user.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_patch_needs_a_token(client):
    response = await client.patch("/users/me", json={"username": "nobody"})
    assert response.status_code == 401
    assert response.json()["code"] == "NOT_AUTHENTICATED"


@pytest.mark.parametrize("current", [None, "not the password"])
async def test_password_change_needs_the_current_password(client, new_user, current):
    user = await new_user(client)
    body = {"password": NEW_PASSWORD}
    if current is not None:
        body["current_password"] = current
    response = await client.patch("/users/me", json=body, headers=user.headers)
    assert response.status_code == 403
    assert response.json() == {
        "detail": "The current password is wrong",
        "code": "WRONG_CURRENT_PASSWORD",
    }
    assert (await login(client, user.email, user.password)).status_code == 200
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 401


async def test_password_change_ends_other_sessions_and_keeps_this_one(client, new_user):
    user = await new_user(client)
    other = (await login(client, user.email, user.password)).json()
    other_headers = {"Authorization": f"Bearer {other['access_token']}"}
    assert (await client.get("/users/me", headers=other_headers)).status_code == 200

    response = await client.patch(
        "/users/me",
        json={"password": NEW_PASSWORD, "current_password": user.password},
        headers=user.headers,
    )
    assert response.status_code == 200

    # This session carries on: its access token and its refresh token still work.
    assert (await client.get("/users/me", headers=user.headers)).status_code == 200
    refreshed = await client.post("/token/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 200
    # The other session is over: access and refresh tokens alike.
    assert (await client.get("/users/me", headers=other_headers)).status_code == 401
    stale = await client.post("/token/refresh", json={"refresh_token": other["refresh_token"]})
    assert stale.status_code == 401
    # The new password logs in, the old one no longer does.
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200
    assert (await login(client, user.email, user.password)).status_code == 401


async def test_guessing_the_current_password_is_throttled(make_client, new_user):
    client = await make_client(login_max_failures=2)
    user = await new_user(client)
    statuses = []
    for _ in range(3):
        response = await client.patch(
            "/users/me",
            json={"password": NEW_PASSWORD, "current_password": "guess"},
            headers=user.headers,
        )
        statuses.append(response.status_code)
    assert statuses == [403, 403, 429]


# --- GET /users/{id} ----------------------------------------------------------------------------


async def test_public_profile_shows_no_email_and_no_hash(client, new_user):
    alice = await new_user(client)
    bob = await new_user(client)
    response = await client.get(f"/users/{bob.id}", headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "username", "created_at"}
    assert body["id"] == bob.id
    assert body["username"] == bob.username


@pytest.mark.parametrize("user_id", ["999999", "2147483647"])
async def test_unknown_profile_is_404(client, new_user, user_id):
    user = await new_user(client)
    response = await client.get(f"/users/{user_id}", headers=user.headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "User not found", "code": "USER_NOT_FOUND"}


async def test_inactive_profile_is_404(client, new_user):
    viewer = await new_user(client)
    gone = await new_user(client)
    async with client.kit.db.sessionmaker() as session:
        target = await session.get(User, gone.id)
        assert target is not None
        target.is_active = False
        await session.commit()
    response = await client.get(f"/users/{gone.id}", headers=viewer.headers)
    assert response.status_code == 404


@pytest.mark.parametrize("user_id", ["abc", "1.5", "%00"])
async def test_malformed_profile_id_is_422(client, new_user, user_id):
    user = await new_user(client)
    response = await client.get(f"/users/{user_id}", headers=user.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("user_id", ["0", "-1", "2147483648", "9223372036854775808", "1" * 40])
async def test_out_of_range_profile_id_is_404_like_posts(client, new_user, user_id):
    """An id no account can have answers like one no account has, as on every id route."""
    user = await new_user(client)
    response = await client.get(f"/users/{user_id}", headers=user.headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "User not found", "code": "USER_NOT_FOUND"}


async def test_profiles_follow_public_reads(make_client, new_user):
    private = await make_client()
    user = await new_user(private)
    anonymous = await private.get(f"/users/{user.id}")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"

    public = await make_client(public_reads=True)
    user = await new_user(public)
    response = await public.get(f"/users/{user.id}")
    assert response.status_code == 200
    assert response.json()["username"] == user.username
