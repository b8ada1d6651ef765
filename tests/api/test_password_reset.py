"""Password reset through HTTP, on SQLite and PostgreSQL: ``POST /password/forgot`` and
``POST /password/reset``, with the mail caught in a memory outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from postkit import PostKitSettings, hookimpl
from postkit.models import User
from tests.support.mail import MailClient, MakeMailClient, SlowMailer, mail_clients, token_of

NEW_PASSWORD = "a brand new passphrase"
FORGOT_BODY = {
    "detail": "If an account has this address, a link to reset its password is on its way."
}


@pytest.fixture
async def make_mail_client(
    settings_factory: Callable[..., PostKitSettings],
) -> AsyncIterator[MakeMailClient]:
    async for make in mail_clients(settings_factory):
        yield make


async def login(client: MailClient, login: str, password: str) -> Any:
    return await client.post("/login", data={"username": login, "password": password})


async def forgot(client: MailClient, email: str) -> Any:
    return await client.post("/password/forgot", json={"email": email})


async def reset_link_for(client: MailClient, email: str) -> str:
    response = await forgot(client, email)
    assert response.status_code == 202, response.text
    await client.settle()
    resets = [m for m in client.outbox.to(email) if m.kind == "password_reset"]
    assert resets, client.outbox.messages
    return token_of(resets[-1])


async def test_reset_sets_the_password_and_ends_every_session(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    assert (await client.get("/users/me", headers=user.headers)).status_code == 200

    response = await forgot(client, user.email.upper())
    assert response.status_code == 202
    assert response.json() == FORGOT_BODY
    [message] = [m for m in await client.settle() if m.kind == "password_reset"]
    assert message.to == user.email
    assert message.subject == "Reset your password"
    assert message.link is not None
    assert message.link.startswith("https://app.example.test/reset-password?token=")
    token = token_of(message)

    reset = await client.post("/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert reset.status_code == 200, reset.text
    assert "sign in again" in reset.json()["detail"]

    # Every session ended: the access token and the refresh token of the old login are dead.
    assert (await client.get("/users/me", headers=user.headers)).status_code == 401
    refreshed = await client.post("/token/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 401
    assert (await login(client, user.email, user.password)).status_code == 401
    fresh = await login(client, user.email, NEW_PASSWORD)
    assert fresh.status_code == 200
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"}
    )
    # Following the mailed link proved the address.
    assert me.json()["email_verified_at"] is not None


async def test_a_token_works_once(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    token = await reset_link_for(client, user.email)
    first = await client.post("/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert first.status_code == 200
    again = await client.post(
        "/password/reset", json={"token": token, "password": "yet another passphrase"}
    )
    assert again.status_code == 400
    assert again.json()["code"] == "INVALID_RESET_TOKEN"
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200


async def test_two_resets_with_one_token_at_once_only_one_wins(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    token = await reset_link_for(client, user.email)
    passwords = ["first concurrent password", "second concurrent password"]
    answers = await asyncio.gather(
        *(
            client.post("/password/reset", json={"token": token, "password": password})
            for password in passwords
        )
    )
    assert sorted(answer.status_code for answer in answers) == [200, 400]
    winner = passwords[[answer.status_code for answer in answers].index(200)]
    assert (await login(client, user.email, winner)).status_code == 200


async def test_forged_and_oversized_tokens_are_refused(make_mail_client, new_user):
    client = await make_mail_client()
    await new_user(client)
    forged = await client.post(
        "/password/reset", json={"token": "x" * 43, "password": NEW_PASSWORD}
    )
    assert forged.status_code == 400
    assert forged.json() == {
        "detail": "This password reset link is invalid or has expired; ask for a new one",
        "code": "INVALID_RESET_TOKEN",
    }
    huge = await client.post("/password/reset", json={"token": "x" * 300, "password": NEW_PASSWORD})
    assert huge.status_code == 422


async def test_an_expired_token_is_refused(make_mail_client, new_user):
    client = await make_mail_client(password_reset_ttl=1)
    user = await new_user(client)
    token = await reset_link_for(client, user.email)
    await asyncio.sleep(1.2)
    late = await client.post("/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert late.status_code == 400
    assert late.json()["code"] == "INVALID_RESET_TOKEN"
    assert (await login(client, user.email, user.password)).status_code == 200


async def test_a_password_change_kills_the_link(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    token = await reset_link_for(client, user.email)
    changed = await client.patch(
        "/users/me",
        json={"password": "changed meanwhile 123", "current_password": user.password},
        headers=user.headers,
    )
    assert changed.status_code == 200
    late = await client.post("/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert late.status_code == 400
    assert late.json()["code"] == "INVALID_RESET_TOKEN"


async def test_an_email_change_kills_the_link(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    token = await reset_link_for(client, user.email)
    await client.patch(
        "/users/me",
        json={"email": "moved@example.com", "current_password": user.password},
        headers=user.headers,
    )
    await client.settle()
    [change] = [m for m in client.outbox.messages if m.kind == "confirm_email_change"]
    assert (await client.post("/verify", json={"token": token_of(change)})).status_code == 200
    late = await client.post("/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert late.status_code == 400


async def test_the_short_password_rule_holds(make_mail_client, new_user):
    client = await make_mail_client(password_min_length=12)
    user = await new_user(client, password="long enough password")
    token = await reset_link_for(client, user.email)
    short = await client.post("/password/reset", json={"token": token, "password": "short"})
    assert short.status_code == 422
    ok = await client.post("/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert ok.status_code == 200


async def test_unknown_address_answers_the_same_and_sends_nothing(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    unknown = await forgot(client, "nobody@example.com")
    known = await forgot(client, user.email)
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json() == FORGOT_BODY
    assert unknown.headers.keys() == known.headers.keys()
    sent = await client.settle()
    assert [m.to for m in sent if m.kind == "password_reset"] == [user.email]


def _request_statements(client: MailClient) -> list[str]:
    """Record the SQL statements run on behalf of requests (not by the mail sender's tasks)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        task = asyncio.current_task()
        if task is None or not task.get_name().startswith("postkit-mail-"):
            seen.append(statement)

    event.listen(client.kit.db.engine.sync_engine, "before_cursor_execute", record)
    return seen


async def test_known_and_unknown_addresses_run_the_same_statements(make_mail_client, new_user):
    """The request does the same work either way; the account lookup happens on the sender."""
    client = await make_mail_client()
    user = await new_user(client)
    await client.settle()
    seen = _request_statements(client)

    await forgot(client, user.email)
    known = list(seen)
    await client.settle()
    seen.clear()
    await forgot(client, "nobody@example.com")
    unknown = list(seen)
    assert known == unknown
    assert known  # the throttle's statements, at least
    assert not any("postkit_users" in statement for statement in known)


async def test_a_slow_mail_server_does_not_delay_the_request(make_mail_client, new_user):
    slow = SlowMailer(seconds=3.0)
    client = await make_mail_client(mailer=slow)
    user = await new_user(client)
    started = time.perf_counter()
    response = await forgot(client, user.email)
    assert response.status_code == 202
    assert time.perf_counter() - started < 1.5
    assert "password_reset" not in [m.kind for m in slow.outbox.messages]
    await client.kit.mail_sender.drain()
    assert sorted(m.kind for m in slow.outbox.messages) == ["password_reset", "verify_email"]


async def test_requests_are_throttled_per_address_known_or_not(make_mail_client, new_user):
    client = await make_mail_client(email_requests_per_account=2)
    user = await new_user(client)
    for email in (user.email, "nobody@example.com"):
        assert (await forgot(client, email)).status_code == 202
        assert (await forgot(client, email)).status_code == 202
        refused = await forgot(client, email)
        assert refused.status_code == 429
        assert refused.json()["code"] == "TOO_MANY_EMAIL_REQUESTS"
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
    await client.settle()
    assert len([m for m in client.outbox.messages if m.kind == "password_reset"]) == 2


async def test_resets_asked_for_elsewhere_never_use_up_the_owners_own(make_mail_client, new_user):
    """Someone asking for a victim's resets from another network exhausts their own budget for
    that address, not the victim's: the owner still gets a link from home."""
    client = await make_mail_client(email_requests_per_account=2)
    user = await new_user(client)
    elsewhere = httpx.ASGITransport(app=client.app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://testserver") as attacker:
        for _ in range(2):
            sent = await attacker.post("/password/forgot", json={"email": user.email})
            assert sent.status_code == 202
        refused = await attacker.post("/password/forgot", json={"email": user.email})
        assert refused.status_code == 429
    assert (await forgot(client, user.email)).status_code == 202  # the owner, from home
    await client.settle()
    assert len([m for m in client.outbox.messages if m.kind == "password_reset"]) == 3


async def test_requests_are_throttled_per_client(make_mail_client):
    client = await make_mail_client(email_requests_per_client=3)
    for index in range(3):
        assert (await forgot(client, f"someone{index}@example.com")).status_code == 202
    refused = await forgot(client, "someone-else@example.com")
    assert refused.status_code == 429
    assert "retry-after" in refused.headers


class ResetHooks:
    def __init__(self) -> None:
        self.reset: list[str] = []

    @hookimpl
    async def after_password_reset(self, user: User) -> None:
        self.reset.append(user.email)

    @hookimpl
    def render_email(self, kind: str, user: User, link: str | None, to: str) -> Any:
        if kind != "password_reset":
            return None  # postkit's default writes the others
        return f"[Example] Password help for {user.username}", f"Go to {link} ({to})"


async def test_hooks_compose_the_mail_and_hear_of_the_reset(make_mail_client, new_user):
    hooks = ResetHooks()
    client = await make_mail_client(plugins=[hooks])
    user = await new_user(client)
    await forgot(client, user.email)
    sent = await client.settle()
    [reset] = [m for m in sent if m.kind == "password_reset"]
    assert reset.subject == f"[Example] Password help for {user.username}"
    assert reset.text == f"Go to {reset.link} ({user.email})"
    [verification] = [m for m in sent if m.kind == "verify_email"]
    assert verification.subject == "Verify your email address"  # the built-in default
    response = await client.post(
        "/password/reset", json={"token": token_of(reset), "password": NEW_PASSWORD}
    )
    assert response.status_code == 200
    assert hooks.reset == [user.email]


async def test_a_deactivated_account_gets_no_link(make_mail_client, new_user):
    client = await make_mail_client()
    user = await new_user(client)
    async with client.kit.db.sessionmaker() as session:
        account = await session.get(User, user.id)
        assert account is not None
        account.is_active = False
        await session.commit()
    assert (await forgot(client, user.email)).status_code == 202
    sent = await client.settle()
    assert not [m for m in sent if m.kind == "password_reset"]


async def test_the_routes_are_documented(make_mail_client):
    client = await make_mail_client()
    paths = client.app.openapi()["paths"]
    forgot_responses = paths["/password/forgot"]["post"]["responses"]
    assert {"202", "422", "429"} <= set(forgot_responses)
    assert {"200", "400", "422"} <= set(paths["/password/reset"]["post"]["responses"])
    assert paths["/password/reset"]["post"]["responses"]["400"]["content"]


async def test_without_email_the_routes_are_not_mounted(make_mail_client):
    client = await make_mail_client(email_enabled=False)
    assert (await forgot(client, "someone@example.com")).status_code == 404
    assert "/password/forgot" not in client.app.openapi()["paths"]
