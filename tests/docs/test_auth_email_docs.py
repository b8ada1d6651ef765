"""The authentication page's mail sample (docs/examples/auth_email.py) runs, against both
databases, with its mail going to a real SMTP server on loopback."""

import asyncio
from collections.abc import Callable
from email import message_from_string
from email.policy import default as default_policy

import httpx
import pytest
from test_auth_docs import PASSWORD, example, serve

from postkit import PostKitSettings
from tests.support.mail import TOKEN_IN_LINK, RecordingHandler, smtp_server


def test_the_production_settings_of_the_sample_are_valid() -> None:
    settings = example("auth_email").production_settings(
        secret_key="k" * 48, smtp_password="from-the-environment"
    )
    assert settings.email_enabled
    assert settings.public_base_url == "https://app.example.com"
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "from-the-environment"


def received_link(handler: RecordingHandler, subject: str) -> str:
    for received in handler.received:
        mail = message_from_string(received.content, policy=default_policy)
        if mail["Subject"] == subject:
            found = TOKEN_IN_LINK.search(mail.get_content())
            assert found is not None
            return found.group(1)
    raise AssertionError(f"no mail {subject!r} among {len(handler.received)}")


async def test_email_sample(settings_factory: Callable[..., PostKitSettings]) -> None:
    handler = RecordingHandler()
    with smtp_server(handler) as port:
        settings = settings_factory(
            email_enabled=True,
            public_base_url="https://app.example.test",
            require_verified_email=True,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            smtp_from="Example <no-reply@example.com>",
        )
        app = example("auth_email").create_app(settings)
        async with serve(app) as http:
            await flow(http, handler)


async def flow(http: httpx.AsyncClient, handler: RecordingHandler) -> None:
    created = await http.post(
        "/api/users", json={"email": "reader@example.com", "password": PASSWORD}
    )
    assert created.status_code == 201
    tokens = (
        await http.post("/api/login", data={"username": "reader@example.com", "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    refused = await http.get("/api/members", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "EMAIL_NOT_VERIFIED"

    await wait_for(handler, 1)
    verify_token = received_link(handler, "Verify your email address")
    assert (await http.post("/api/verify", json={"token": verify_token})).status_code == 200
    allowed = await http.get("/api/members", headers=headers)
    assert allowed.status_code == 200

    forgot = await http.post("/api/password/forgot", json={"email": "reader@example.com"})
    assert forgot.status_code == 202
    await wait_for(handler, 2)
    reset_token = received_link(handler, "Example: choose a new password")
    reset = await http.post(
        "/api/password/reset", json={"token": reset_token, "password": "a new passphrase!"}
    )
    assert reset.status_code == 200
    assert (await http.get("/api/members", headers=headers)).status_code == 401


async def wait_for(handler: RecordingHandler, count: int) -> None:
    for _ in range(500):
        if len(handler.received) >= count:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{len(handler.received)} mail(s) arrived, expected {count}")
