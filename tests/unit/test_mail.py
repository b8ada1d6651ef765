"""postkit's mail: SmtpMailer against real SMTP servers on loopback (plain, STARTTLS with a login,
implicit TLS, a server that refuses, one that is down), the background sender's retries, queue
bound and shutdown, the logging default, and the start-up checks."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from email import message_from_string
from email.policy import default as default_policy
from typing import Any

import aiosmtplib
import pytest
from pydantic import ValidationError

from postkit import PostKit, PostKitSettings
from postkit.mail import (
    LoggingMailer,
    MailMessage,
    MailSender,
    MemoryOutbox,
    SmtpMailer,
    mailer_from_settings,
)
from tests.support.api import TEST_SECRET
from tests.support.mail import (
    SMTP_PASSWORD,
    SMTP_USER,
    MakeMailClient,
    RecordingHandler,
    free_port,
    mail_clients,
    self_signed_certificate,
    smtp_server,
    starttls_server,
)

MESSAGE = MailMessage(
    to="ann@example.com",
    subject="Reset your password",
    text="Open https://app.example.test/reset-password?token=abc",
    kind="password_reset",
    link="https://app.example.test/reset-password?token=abc",
)


def smtp(port: int, **overrides: Any) -> SmtpMailer:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Example <no-reply@example.com>",
        "timeout": 5.0,
    }
    values.update(overrides)
    return SmtpMailer(**values)


def parsed(content: str) -> Any:
    return message_from_string(content, policy=default_policy)


# --- SmtpMailer against real servers ------------------------------------------------------------


async def test_plain_smtp_delivers_the_message():
    handler = RecordingHandler()
    with smtp_server(handler) as port:
        await smtp(port).send(MESSAGE)
    [received] = handler.received
    assert received.sender == "no-reply@example.com"
    assert received.recipients == ["ann@example.com"]
    assert received.tls is False
    mail = parsed(received.content)
    assert mail["Subject"] == "Reset your password"
    assert mail["From"] == "Example <no-reply@example.com>"
    assert mail["To"] == "ann@example.com"
    assert mail["Message-ID"].endswith("@example.com>")
    assert mail.get_content().strip() == MESSAGE.text


async def test_starttls_with_a_login(tmp_path):
    certificate = self_signed_certificate(tmp_path)
    handler = RecordingHandler()
    with starttls_server(handler, certificate) as port:
        mailer = smtp(
            port,
            security="starttls",
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            ca_file=str(certificate.cert_file),
        )
        await mailer.send(MESSAGE)
    [received] = handler.received
    assert received.tls is True
    assert received.authenticated is True


async def test_starttls_checks_the_certificate(tmp_path):
    """Without the CA file the self-signed certificate is not trusted: nothing is sent."""
    certificate = self_signed_certificate(tmp_path)
    handler = RecordingHandler()
    with starttls_server(handler, certificate) as port:
        mailer = smtp(port, security="starttls", username=SMTP_USER, password=SMTP_PASSWORD)
        with pytest.raises(ssl.SSLCertVerificationError, match=r"(?i)certificate"):
            await mailer.send(MESSAGE)
    assert handler.received == []


async def test_a_wrong_smtp_password_is_refused(tmp_path):
    certificate = self_signed_certificate(tmp_path)
    handler = RecordingHandler()
    with starttls_server(handler, certificate) as port:
        mailer = smtp(
            port,
            security="starttls",
            username=SMTP_USER,
            password="wrong",
            ca_file=str(certificate.cert_file),
        )
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await mailer.send(MESSAGE)
    assert handler.received == []


async def test_implicit_tls(tmp_path):
    certificate = self_signed_certificate(tmp_path)
    handler = RecordingHandler()
    with smtp_server(handler, ssl_context=certificate.server_context()) as port:
        await smtp(port, security="tls", ca_file=str(certificate.cert_file)).send(MESSAGE)
    [received] = handler.received
    assert received.tls is True


async def test_a_refusing_server_raises():
    handler = RecordingHandler(refuse=True)
    with smtp_server(handler) as port, pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await smtp(port).send(MESSAGE)
    assert "550" in str(refused.value.recipients[0].code)
    assert handler.received == []


async def test_a_server_that_is_down_raises():
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await smtp(free_port()).send(MESSAGE)


# --- The background sender ----------------------------------------------------------------------


class FlakyMailer:
    """Fails ``failures`` times, then delivers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []
        self.outbox = MemoryOutbox()

    async def send(self, message: MailMessage) -> None:
        self.calls.append(time.perf_counter())
        if len(self.calls) <= self.failures:
            raise ConnectionError("mail server unreachable")
        await self.outbox.send(message)


async def job() -> MailMessage:
    return MESSAGE


async def test_the_sender_retries_with_backoff_then_delivers():
    flaky = FlakyMailer(failures=2)
    sender = MailSender(flaky, attempts=3, retry_delay=0.05)
    sender.submit(job)
    await sender.drain()
    await sender.close()
    assert len(flaky.calls) == 3
    assert flaky.outbox.messages == [MESSAGE]
    first_wait = flaky.calls[1] - flaky.calls[0]
    second_wait = flaky.calls[2] - flaky.calls[1]
    assert first_wait >= 0.05
    assert second_wait >= 0.1  # doubled


async def test_the_sender_gives_up_after_its_attempts_and_logs(caplog):
    flaky = FlakyMailer(failures=10)
    sender = MailSender(flaky, attempts=2, retry_delay=0.01)
    with caplog.at_level(logging.WARNING, logger="postkit"):
        sender.submit(job)
        await sender.drain()
        await sender.close()
    assert len(flaky.calls) == 2
    assert flaky.outbox.messages == []
    assert "gave up sending password_reset mail to ann@example.com after 2 attempt(s)" in (
        caplog.text
    )
    assert "mail server unreachable" in caplog.text


async def test_a_full_queue_drops_and_logs_instead_of_blocking(caplog):
    release = asyncio.Event()

    class Stuck:
        async def send(self, message: MailMessage) -> None:
            await release.wait()

    sender = MailSender(Stuck(), attempts=1, queue_size=1)
    with caplog.at_level(logging.ERROR, logger="postkit"):
        accepted = [sender.submit(job) for _ in range(6)]
    # Two workers hold a job each and one waits; the rest are dropped at once.
    await asyncio.sleep(0)
    assert accepted.count(False) >= 3
    assert "the mail queue is full" in caplog.text
    release.set()
    await sender.close()


async def test_a_failing_composer_is_logged_and_the_sender_carries_on(caplog):
    outbox = MemoryOutbox()
    sender = MailSender(outbox, attempts=1)

    async def broken() -> MailMessage:
        raise RuntimeError("template missing")

    with caplog.at_level(logging.ERROR, logger="postkit"):
        sender.submit(broken)
        sender.submit(job)
        await sender.drain()
    await sender.close()
    assert outbox.messages == [MESSAGE]
    assert "composing a mail failed" in caplog.text


async def test_close_lets_queued_mail_go_out_first():
    slow_outbox = MemoryOutbox()

    class Slow:
        async def send(self, message: MailMessage) -> None:
            await asyncio.sleep(0.2)
            await slow_outbox.send(message)

    sender = MailSender(Slow(), attempts=1)
    for _ in range(3):
        sender.submit(job)
    await sender.close(timeout=5)
    assert len(slow_outbox.messages) == 3


async def test_close_gives_up_on_mail_that_takes_too_long(caplog):
    class Hanging:
        async def send(self, message: MailMessage) -> None:
            await asyncio.sleep(60)

    sender = MailSender(Hanging(), attempts=1)
    sender.submit(job)
    started = time.perf_counter()
    with caplog.at_level(logging.ERROR, logger="postkit"):
        await sender.close(timeout=0.2)
    assert time.perf_counter() - started < 2
    assert "unsent" in caplog.text


# --- Through HTTP, with a real server (both databases) ------------------------------------------


@pytest.fixture
async def make_mail_client(
    settings_factory: Callable[..., PostKitSettings],
) -> AsyncIterator[MakeMailClient]:
    async for make in mail_clients(settings_factory):
        yield make


async def test_reset_mail_goes_out_over_starttls(make_mail_client, new_user, tmp_path):
    certificate = self_signed_certificate(tmp_path)
    handler = RecordingHandler()
    with starttls_server(handler, certificate) as port:
        settings = {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": "starttls",
            "smtp_username": SMTP_USER,
            "smtp_password": SMTP_PASSWORD,
            "smtp_from": "Example <no-reply@example.com>",
            "smtp_ca_file": str(certificate.cert_file),
        }
        probe = PostKitSettings(_env_file=None, secret_key=TEST_SECRET, **settings)  # type: ignore[call-arg]
        client = await make_mail_client(mailer=mailer_from_settings(probe), **settings)
        assert isinstance(client.kit.mailer, SmtpMailer)
        user = await new_user(client)
        response = await client.post("/password/forgot", json={"email": user.email})
        assert response.status_code == 202
        await client.kit.mail_sender.drain()
    kinds = sorted(parsed(r.content)["Subject"] for r in handler.received)
    assert kinds == ["Reset your password", "Verify your email address"]
    assert all(r.tls and r.authenticated for r in handler.received)
    reset = next(r for r in handler.received if "Reset" in parsed(r.content)["Subject"])
    assert "https://app.example.test/reset-password?token=" in parsed(reset.content).get_content()


@pytest.mark.parametrize("server", ["refusing", "down"])
async def test_a_broken_mail_server_never_fails_the_request(
    server, make_mail_client, new_user, caplog
):
    handler = RecordingHandler(refuse=True)
    with smtp_server(handler) as port:
        mailer = smtp(port if server == "refusing" else free_port())
        client = await make_mail_client(mailer=mailer, mail_send_attempts=3)
        with caplog.at_level(logging.WARNING, logger="postkit"):
            started = time.perf_counter()
            user = await new_user(client)  # registration mails a verification link
            answer = await client.post("/password/forgot", json={"email": user.email})
            assert answer.status_code == 202
            assert time.perf_counter() - started < 5
            await client.kit.mail_sender.drain()
    if server == "refusing":
        assert handler.attempts == 6  # two messages, three tries each
    assert caplog.text.count("gave up sending") == 2
    assert caplog.text.count("retrying in") == 4
    # The account is fine: its owner logs in.
    login = await client.post("/login", data={"username": user.email, "password": user.password})
    assert login.status_code == 200


# --- Defaults and start-up checks ---------------------------------------------------------------


async def test_the_logging_mailer_logs_the_link(caplog):
    with caplog.at_level(logging.INFO, logger="postkit"):
        await LoggingMailer().send(MESSAGE)
    assert "ann@example.com" in caplog.text
    assert MESSAGE.link in caplog.text
    # WARNING, so that a default logging setup (uvicorn's) shows the link in development.
    assert any(record.levelno == logging.WARNING for record in caplog.records)


def test_without_smtp_host_the_kit_logs_mail(settings_factory):
    kit = PostKit(settings_factory(email_enabled=True))
    assert isinstance(kit.mailer, LoggingMailer)
    outbox = MemoryOutbox()
    kit.mailer = outbox
    assert kit.mail_sender.mailer is outbox


async def test_production_warns_when_mail_is_only_logged(settings_factory, caplog):
    settings = settings_factory(
        email_enabled=True, environment="production", public_base_url="https://app.example.com"
    )
    kit = PostKit(settings)
    with caplog.at_level(logging.WARNING, logger="postkit"):
        async with kit.lifespan():
            pass
    assert "email_enabled is on in production but no smtp_host is set" in caplog.text

    caplog.clear()
    quiet = PostKit(settings, mailer=MemoryOutbox())
    with caplog.at_level(logging.WARNING, logger="postkit"):
        async with quiet.lifespan():
            pass
    assert "no smtp_host" not in caplog.text


def build(**values: Any) -> PostKitSettings:
    return PostKitSettings(_env_file=None, secret_key=TEST_SECRET, **values)  # type: ignore[call-arg]


def test_production_refuses_email_without_public_base_url():
    with pytest.raises(ValidationError, match="public_base_url is required") as refused:
        build(email_enabled=True, environment="production")
    assert "POSTKIT_PUBLIC_BASE_URL" in str(refused.value)
    assert build(environment="production").public_base_url is None  # no email, no need
    assert build(email_enabled=True).link_base_url == "http://localhost:8000"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"require_verified_email": True}, "require_verified_email needs email_enabled"),
        ({"smtp_host": "smtp.example.com"}, "smtp_from is required"),
        ({"public_base_url": "app.example.com"}, "public_base_url"),
        ({"reset_url_path": "/reset"}, "reset_url_path"),
        ({"verify_url_path": "/v?t={token}&x={other}"}, "verify_url_path"),
        ({"password_reset_ttl": 0}, "password_reset_ttl"),
        ({"smtp_security": "ssl"}, "smtp_security"),
    ],
)
def test_bad_mail_settings_are_refused_with_the_setting_named(values, named):
    with pytest.raises(ValidationError, match=named):
        build(**values)


def test_mail_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("POSTKIT_EMAIL_ENABLED", "true")
    monkeypatch.setenv("POSTKIT_PUBLIC_BASE_URL", "https://app.example.com/")
    monkeypatch.setenv("POSTKIT_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("POSTKIT_SMTP_PORT", "465")
    monkeypatch.setenv("POSTKIT_SMTP_SECURITY", "tls")
    monkeypatch.setenv("POSTKIT_SMTP_FROM", "no-reply@example.com")
    monkeypatch.setenv("POSTKIT_SMTP_PASSWORD", "hunter2-but-longer")
    monkeypatch.setenv("POSTKIT_PASSWORD_RESET_TTL", "1800")
    settings = build()
    assert settings.public_base_url == "https://app.example.com"
    assert settings.password_reset_ttl.total_seconds() == 1800
    assert "hunter2" not in repr(settings)
    mailer = mailer_from_settings(settings)
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.port, mailer.security, mailer.password) == (465, "tls", "hunter2-but-longer")
