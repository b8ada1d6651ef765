"""Helpers of the account mail tests: real SMTP servers on loopback, a self-signed certificate,
and a kit whose mail lands in a :class:`~postkit.mail.MemoryOutbox`."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from postkit import PostKit, PostKitSettings
from postkit.mail import Mailer, MailMessage, MemoryOutbox

SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-password-for-tests"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: str
    tls: bool
    authenticated: bool


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that keeps what it accepts, or refuses every recipient with 550,
    or takes ``delay`` seconds to accept the data."""

    refuse: bool = False
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.attempts += 1
        if self.refuse:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        content = envelope.content
        text = content.decode("utf-8") if isinstance(content, bytes) else str(content)
        self.received.append(
            Received(
                sender=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                content=text,
                # session.ssl is set by STARTTLS; the transport knows implicit TLS too.
                tls=server.transport.get_extra_info("ssl_object") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        self.arrived.set()
        return "250 Message accepted"


def _authenticator(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    valid = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=valid, handled=False)


@dataclass
class Certificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def self_signed_certificate(directory: Path) -> Certificate:
    """A certificate for ``localhost`` and ``127.0.0.1``, made here and trusted by nobody."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "smtp-cert.pem"
    key_file = directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


@contextmanager
def smtp_server(handler: RecordingHandler, **kwargs: Any) -> Iterator[int]:
    """Run an aiosmtpd server on a free loopback port (in its own thread); yield the port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def starttls_server(handler: RecordingHandler, certificate: Certificate) -> Iterator[int]:
    """A server that requires STARTTLS and then a login (``SMTP_USER``/``SMTP_PASSWORD``)."""
    with smtp_server(
        handler,
        tls_context=certificate.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=_authenticator,
    ) as port:
        yield port


class SlowMailer:
    """A mailer that takes ``seconds`` per message, then keeps it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.outbox = MemoryOutbox()

    async def send(self, message: MailMessage) -> None:
        await asyncio.sleep(self.seconds)
        await self.outbox.send(message)


TOKEN_IN_LINK = re.compile(r"token=([A-Za-z0-9_\-]+)")


def token_of(message: MailMessage) -> str:
    """The token in a message's link (and body)."""
    assert message.link is not None
    found = TOKEN_IN_LINK.search(message.link)
    assert found is not None, message.link
    assert message.link in message.text
    return found.group(1)


@dataclass
class MailClient:
    http: httpx.AsyncClient
    kit: PostKit
    app: FastAPI
    outbox: MemoryOutbox

    async def settle(self) -> list[MailMessage]:
        """Wait for every queued mail job; return all messages sent so far."""
        await self.kit.mail_sender.drain()
        return list(self.outbox.messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)


MakeMailClient = Callable[..., Awaitable[MailClient]]


async def mail_clients(
    settings_factory: Callable[..., PostKitSettings],
) -> AsyncIterator[MakeMailClient]:
    """The body of a fixture building kits with ``email_enabled`` and a memory outbox."""
    async with AsyncExitStack() as stack:

        async def make(
            *,
            plugins: tuple[object, ...] | list[object] = (),
            mailer: Mailer | None = None,
            **overrides: Any,
        ) -> MailClient:
            values: dict[str, Any] = {
                "email_enabled": True,
                "public_base_url": "https://app.example.test",
                "mail_retry_delay": 0.01,
            }
            values.update(overrides)
            outbox = MemoryOutbox()
            kit = PostKit(
                settings_factory(**values),
                plugins=plugins,
                mailer=mailer if mailer is not None else outbox,
            )
            app = FastAPI(lifespan=kit.lifespan)
            app.include_router(kit.router)
            await stack.enter_async_context(app.router.lifespan_context(app))
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                )
            )
            return MailClient(http=http, kit=kit, app=app, outbox=outbox)

        yield make


def elapsed(started: float) -> float:
    return time.perf_counter() - started
