"""Email verification, ``require_verified_email``, ``kit.verified_user`` and email change, through
HTTP on SQLite and PostgreSQL.

No ``from __future__ import annotations`` here: FastAPI must resolve the host route's annotations.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import pytest
from fastapi import Depends

from postkit import PostKitSettings
from postkit.errors import EmailChangeUnavailable
from postkit.models import User
from tests.support.api import TEST_PASSWORD
from tests.support.mail import MailClient, MakeMailClient, mail_clients, token_of


@pytest.fixture
async def make_mail_client(
    settings_factory: Callable[..., PostKitSettings],
) -> AsyncIterator[MakeMailClient]:
    async for make in mail_clients(settings_factory):
        yield make


async def mails(client: MailClient, kind: str, to: str | None = None) -> list[Any]:
    sent = await client.settle()
    return [m for m in sent if m.kind == kind and (to is None or m.to == to)]


async def verify(client: MailClient, token: str) -> Any:
    return await client.post("/verify", json={"token": token})


async def test_registration_mails_a_verification_link(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    me = (await client.get("/users/me", headers=user.headers)).json()
    assert me["email_verified_at"] is None
    [message] = await mails(client, "verify_email")
    assert message.to == user.email
    assert message.link.startswith("https://app.example.test/verify-email?token=")

    verified = await verify(client, token_of(message))
    assert verified.status_code == 200, verified.text
    assert verified.json()["email"] == user.email
    assert verified.json()["email_verified_at"] is not None
    me = (await client.get("/users/me", headers=user.headers)).json()
    assert me["email_verified_at"] == verified.json()["email_verified_at"]

    again = await verify(client, token_of(message))
    assert again.status_code == 400
    assert again.json()["code"] == "INVALID_VERIFICATION_TOKEN"


async def test_forged_and_expired_links_are_refused(make_mail_client, new_user):
    client = await make_mail_client(email_verification_ttl=1)
    await new_user(client)
    [message] = await mails(client, "verify_email")
    forged = await verify(client, "not-a-token")
    assert forged.status_code == 400
    assert forged.json()["code"] == "INVALID_VERIFICATION_TOKEN"
    await asyncio.sleep(1.2)
    assert (await verify(client, token_of(message))).status_code == 400


async def test_resend_replaces_the_link_and_is_throttled(make_mail_client, new_user):
    client = await make_mail_client(email_requests_per_account=2)
    user = await new_user(client)
    [first] = await mails(client, "verify_email")
    resent = await client.post("/users/me/verification", headers=user.headers)
    assert resent.status_code == 202
    assert resent.json() == {"detail": "A verification link is on its way."}
    second = (await mails(client, "verify_email"))[-1]
    assert token_of(second) != token_of(first)
    assert (await verify(client, token_of(first))).status_code == 400  # replaced
    assert (await client.post("/users/me/verification", headers=user.headers)).status_code == 202
    refused = await client.post("/users/me/verification", headers=user.headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == "TOO_MANY_EMAIL_REQUESTS"
    assert (await client.post("/users/me/verification")).status_code == 401


async def test_resend_to_a_verified_account_sends_nothing(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    [message] = await mails(client, "verify_email")
    await verify(client, token_of(message))
    answer = await client.post("/users/me/verification", headers=user.headers)
    assert answer.status_code == 202
    assert answer.json() == {"detail": "Your email is verified."}
    assert len(await mails(client, "verify_email")) == 1


async def test_required_verification_guards_the_write_routes(make_mail_client, new_user):
    client = await make_mail_client(require_verified_email=True)
    author = await new_user(client)  # unverified accounts may log in
    refused = await client.post(
        "/posts", json={"title": "Hi", "content": "there"}, headers=author.headers
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Verify your email address first",
        "code": "EMAIL_NOT_VERIFIED",
    }
    [message] = await mails(client, "verify_email", to=author.email)
    assert (await verify(client, token_of(message))).status_code == 200
    created = await client.post(
        "/posts", json={"title": "Hi", "content": "there"}, headers=author.headers
    )
    assert created.status_code == 201
    post_id = created.json()["id"]

    voter = await new_user(client)
    assert (await client.get(f"/posts/{post_id}", headers=voter.headers)).status_code == 200
    vote = await client.put(f"/posts/{post_id}/vote", headers=voter.headers)
    assert vote.status_code == 403
    assert vote.json()["code"] == "EMAIL_NOT_VERIFIED"
    classic = await client.post("/vote", json={"post_id": post_id, "dir": 1}, headers=voter.headers)
    assert classic.status_code == 403
    # The author's own changes pass.
    patched = await client.patch(
        f"/posts/{post_id}", json={"title": "Hello"}, headers=author.headers
    )
    assert patched.status_code == 200


async def test_without_the_setting_unverified_accounts_write(make_mail_client, new_user):
    client = await make_mail_client()
    author = await new_user(client)
    created = await client.post(
        "/posts", json={"title": "Hi", "content": "there"}, headers=author.headers
    )
    assert created.status_code == 201


async def test_verified_user_guards_a_host_route(make_mail_client, new_user):
    client = await make_mail_client()
    kit = client.kit

    @client.app.get("/members-only")
    async def members_only(user: Annotated[User, Depends(kit.verified_user)]) -> dict[str, str]:
        return {"hello": user.username}

    user = await new_user(client)
    assert (await client.get("/members-only")).status_code == 401
    refused = await client.get("/members-only", headers=user.headers)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Verify your email address first"
    [message] = await mails(client, "verify_email")
    await verify(client, token_of(message))
    allowed = await client.get("/members-only", headers=user.headers)
    assert allowed.json() == {"hello": user.username}


async def change_email(client: MailClient, user: Any, email: str, **extra: Any) -> Any:
    body = {"email": email, "current_password": user.password} | extra
    return await client.patch("/users/me", json=body, headers=user.headers)


async def test_an_email_change_takes_effect_when_the_new_address_confirms(
    make_mail_client, new_user
):
    client = await make_mail_client()
    user = await new_user(client)
    answer = await change_email(client, user, "New.Address@Example.com")
    assert answer.status_code == 200, answer.text
    assert answer.json()["email"] == user.email  # not yet

    [confirm] = await mails(client, "confirm_email_change")
    assert confirm.to == "new.address@example.com"
    assert confirm.subject == "Confirm your new email address"
    [notice] = await mails(client, "email_change_notice")
    assert notice.to == user.email
    assert notice.link is None
    assert "reset your password" in notice.text

    # Still the old address until the link is followed.
    old = {"username": user.email, "password": TEST_PASSWORD}
    assert (await client.post("/login", data=old)).status_code == 200
    done = await verify(client, token_of(confirm))
    assert done.status_code == 200
    assert done.json()["email"] == "new.address@example.com"
    assert done.json()["email_verified_at"] is not None
    me = (await client.get("/users/me", headers=user.headers)).json()
    assert me["email"] == "new.address@example.com"
    moved = await client.post(
        "/login", data={"username": "new.address@example.com", "password": TEST_PASSWORD}
    )
    assert moved.status_code == 200
    assert (await client.post("/login", data=old)).status_code == 401
    assert (await verify(client, token_of(confirm))).status_code == 400


async def test_an_email_change_needs_the_current_password(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    missing = await client.patch(
        "/users/me", json={"email": "other@example.com"}, headers=user.headers
    )
    assert missing.status_code == 403
    assert missing.json()["code"] == "WRONG_CURRENT_PASSWORD"
    wrong = await change_email(client, user, "other@example.com", current_password="nope nope")
    assert wrong.status_code == 403
    assert await mails(client, "confirm_email_change") == []


async def test_a_pending_address_is_taken_for_everyone_else(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    other = await new_user(client)
    assert (await change_email(client, user, "wanted@example.com")).status_code == 200

    registration = await client.post(
        "/users", json={"email": "wanted@example.com", "password": TEST_PASSWORD}
    )
    assert registration.status_code == 409
    assert registration.json()["code"] == "EMAIL_TAKEN"
    competing = await change_email(client, other, "wanted@example.com")
    assert competing.status_code == 409
    assert competing.json()["code"] == "EMAIL_TAKEN"
    taken = await change_email(client, other, user.email)
    assert taken.status_code == 409
    # The asker may ask again (a new link replaces the old one).
    assert (await change_email(client, user, "wanted@example.com")).status_code == 200
    first, second = await mails(client, "confirm_email_change")
    assert (await verify(client, token_of(first))).status_code == 400
    assert (await verify(client, token_of(second))).status_code == 200


async def test_a_password_change_cancels_a_pending_email_change(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    await change_email(client, user, "hijack@example.com")
    [confirm] = await mails(client, "confirm_email_change")
    changed = await client.patch(
        "/users/me",
        json={"password": "a fresh password 42", "current_password": user.password},
        headers=user.headers,
    )
    assert changed.status_code == 200
    assert (await verify(client, token_of(confirm))).status_code == 400
    # ...and frees the address.
    registration = await client.post(
        "/users", json={"email": "hijack@example.com", "password": TEST_PASSWORD}
    )
    assert registration.status_code == 201


async def test_without_email_an_email_change_is_refused(make_mail_client, new_user):
    client = await make_mail_client(email_enabled=False)
    user = await new_user(client)
    refused = await change_email(client, user, "elsewhere@example.com")
    assert refused.status_code == 422  # PATCH /users/me has no email field then
    assert "email" not in client.app.openapi()["components"]["schemas"]["UserUpdate"]["properties"]
    # Host code calling the service gets the typed error.
    async with client.kit.db.sessionmaker() as session:
        auth = await client.kit.sessions.authenticate(session, user.access_token)
        with pytest.raises(EmailChangeUnavailable):
            await client.kit.accounts.update(
                session,
                auth=auth,
                address="127.0.0.1",
                email="elsewhere@example.com",
                current_password=user.password,
            )
    assert (await client.post("/verify", json={"token": "x"})).status_code == 404
    assert await client.settle() == []  # registration sent nothing either


async def test_the_new_fields_are_documented(make_mail_client):
    client = await make_mail_client()
    schema = client.app.openapi()
    components = schema["components"]["schemas"]
    assert "email_verified_at" in components["UserPrivate"]["properties"]
    assert "email" in components["UserEmailUpdate"]["properties"]
    assert {"200", "400", "409"} <= set(schema["paths"]["/verify"]["post"]["responses"])
    assert {"202", "401", "429"} <= set(
        schema["paths"]["/users/me/verification"]["post"]["responses"]
    )
