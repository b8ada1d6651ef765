"""Sending mail: a small :class:`Mailer` interface, three mailers, and the kit's background sender.

A :class:`Mailer` has one method, ``async send(message)``. postkit ships :class:`SmtpMailer`
(any SMTP server, STARTTLS or implicit TLS), :class:`LoggingMailer` (the development default:
the message is logged, links included) and :class:`MemoryOutbox` (tests read what was sent).

No request ever waits for a mail server. A route hands a *job* to the kit's
:class:`MailSender`, which runs it on a task of its own once the request's writes are
committed: the job composes the message (``render_email`` hook), and the sender delivers it,
retrying a bounded number of times with backoff and logging what fails. A slow, refusing or
unreachable server therefore never fails or delays the request that caused the mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from postkit.settings import PostKitSettings

__all__ = [
    "LoggingMailer",
    "MailJob",
    "MailMessage",
    "MailSender",
    "Mailer",
    "MemoryOutbox",
    "SmtpMailer",
    "mailer_from_settings",
]

logger = logging.getLogger("postkit")


@dataclass(frozen=True)
class MailMessage:
    """One plain-text message to one recipient.

    :param to: the recipient's address.
    :param subject: the subject line.
    :param text: the plain-text body.
    :param kind: what it is for (``"password_reset"``, ``"verify_email"``, ...).
    :param link: the link the body carries, if any (for logs and tests).
    """

    to: str
    subject: str
    text: str
    kind: str = "other"
    link: str | None = None


@runtime_checkable
class Mailer(Protocol):
    """Delivers a message, or raises. postkit's sender retries and logs failures."""

    async def send(self, message: MailMessage) -> None: ...


SmtpSecurity = Literal["starttls", "tls", "none"]


class SmtpMailer:
    """Sends through an SMTP server with aiosmtplib.

    :param host: the server's host name.
    :param port: its port (587 for STARTTLS, 465 for implicit TLS).
    :param security: ``"starttls"`` (upgrade required: a server that cannot is an error),
        ``"tls"`` (TLS from the first byte) or ``"none"`` (plain text).
    :param from_address: the ``From`` header and envelope sender.
    :param username: login, when the server asks for one.
    :param password: its password.
    :param timeout: seconds any connection step or command may take.
    :param ca_file: a PEM bundle to verify the server's certificate with, instead of the
        system's.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: SmtpSecurity,
        from_address: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security: SmtpSecurity = security
        self.from_address = from_address
        self.username = username
        self.password = password
        self.timeout = timeout
        self.tls_context = (
            ssl.create_default_context(cafile=ca_file) if security != "none" else None
        )

    @classmethod
    def from_settings(cls, settings: PostKitSettings) -> SmtpMailer:
        """The mailer the ``smtp_*`` settings describe (``smtp_host`` must be set)."""
        assert settings.smtp_host is not None
        assert settings.smtp_from is not None  # settings validation requires it with a host
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            from_address=settings.smtp_from,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value()
                if settings.smtp_password is not None
                else None
            ),
            timeout=settings.smtp_timeout,
            ca_file=settings.smtp_ca_file,
        )

    def compose(self, message: MailMessage) -> EmailMessage:
        """The RFC 5322 message sent for ``message``."""
        composed = EmailMessage()
        composed["From"] = self.from_address
        composed["To"] = message.to
        composed["Subject"] = message.subject
        composed["Date"] = email.utils.formatdate(localtime=False)
        composed["Message-ID"] = email.utils.make_msgid(domain=_domain(self.from_address))
        composed.set_content(message.text)
        return composed

    async def send(self, message: MailMessage) -> None:
        """Connect, upgrade or wrap the connection as configured, log in, send, quit."""
        import aiosmtplib  # here: a process that never sends mail never loads it

        await aiosmtplib.send(
            self.compose(message),
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            tls_context=self.tls_context,
            timeout=self.timeout,
        )


def _domain(address: str) -> str | None:
    _, parsed = email.utils.parseaddr(address)
    return parsed.rpartition("@")[2] or None


class LoggingMailer:
    """Logs each message at WARNING (so a default logging setup shows it), link included, and
    sends nothing: the development default.

    Never use it in production: the links it logs let anyone who reads the log reset passwords.
    The kit warns at start-up when it is used with ``environment="production"``.
    """

    async def send(self, message: MailMessage) -> None:
        logger.warning(
            "postkit: mail not sent (no smtp_host configured) to %s: %s\n%s",
            message.to,
            message.subject,
            message.text,
        )


class MemoryOutbox:
    """Keeps what is sent in :attr:`messages`, for tests: ``PostKit(..., mailer=outbox)``."""

    def __init__(self) -> None:
        self.messages: list[MailMessage] = []
        self._arrived = asyncio.Event()

    async def send(self, message: MailMessage) -> None:
        self.messages.append(message)
        self._arrived.set()

    def to(self, address: str) -> list[MailMessage]:
        """The messages sent to ``address``, oldest first."""
        return [message for message in self.messages if message.to == address]

    async def wait_for(self, count: int = 1, *, timeout: float = 5.0) -> list[MailMessage]:
        """Wait until at least ``count`` messages were sent; return them all.

        :raises TimeoutError: fewer arrived in ``timeout`` seconds.
        """

        async def arrived() -> None:
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()

        try:
            await asyncio.wait_for(arrived(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{len(self.messages)} message(s) sent in {timeout}s, expected {count}"
            ) from None
        return list(self.messages)


def mailer_from_settings(settings: PostKitSettings) -> Mailer:
    """:class:`SmtpMailer` when ``smtp_host`` is set, else :class:`LoggingMailer`."""
    if settings.smtp_host is not None:
        return SmtpMailer.from_settings(settings)
    return LoggingMailer()


MailJob = Callable[[], Awaitable[MailMessage | None]]
"""Composes one message when the sender gets to it (``None``: nothing to send after all)."""

_WORKERS = 2
_DRAIN_SECONDS = 10.0


class MailSender:
    """The kit's background sender: a bounded queue of jobs and a couple of worker tasks.

    :meth:`submit` never blocks and never raises: a full queue drops the job and logs an error.
    Each message gets ``attempts`` tries, ``retry_delay`` seconds apart at first and doubling
    after each failure; the last failure is logged with its reason. The workers start with the
    kit's lifespan (or with the first job, for a host that does not enter it) and stop with the
    lifespan, after the queue drains (up to 10 seconds; what is left then is cancelled, logged).

    :param mailer: what delivers the messages.
    :param attempts: tries per message.
    :param retry_delay: seconds before the first retry.
    :param queue_size: jobs waiting at most.
    """

    def __init__(
        self, mailer: Mailer, *, attempts: int = 3, retry_delay: float = 2.0, queue_size: int = 1000
    ) -> None:
        self.mailer = mailer
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.queue_size = queue_size
        self._queue: asyncio.Queue[MailJob] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return bool(self._workers) and self._loop is asyncio.get_running_loop()

    def start(self) -> None:
        """Start the workers on the running event loop (again, if they ran on another one)."""
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._workers = [
            asyncio.create_task(self._work(), name=f"postkit-mail-{index}")
            for index in range(_WORKERS)
        ]

    def submit(self, job: MailJob) -> bool:
        """Queue ``job``; ``False`` (logged) when the queue is full."""
        self.start()
        assert self._queue is not None
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            logger.error(
                "postkit: the mail queue is full (%d waiting); a message was dropped",
                self.queue_size,
            )
            return False
        return True

    async def drain(self) -> None:
        """Wait until every queued job is done (sent, given up, or nothing to send)."""
        if self._queue is not None and self.running:
            await self._queue.join()

    async def close(self, *, timeout: float = _DRAIN_SECONDS) -> None:
        """Let the queue drain for up to ``timeout`` seconds, then stop the workers."""
        if not self.running:
            self._workers = []
            return
        try:
            await asyncio.wait_for(self.drain(), timeout)
        except asyncio.TimeoutError:
            assert self._queue is not None
            logger.error(
                "postkit: shutting down with %d mail job(s) unsent after %.0fs",
                self._queue.qsize(),
                timeout,
            )
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            job = await queue.get()
            try:
                message = await job()
                if message is not None:
                    await self._deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("postkit: composing a mail failed; nothing was sent")
            finally:
                queue.task_done()

    async def _deliver(self, message: MailMessage) -> None:
        delay = self.retry_delay
        for attempt in range(1, self.attempts + 1):
            try:
                await self.mailer.send(message)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if attempt == self.attempts:
                    logger.error(
                        "postkit: gave up sending %s mail to %s after %d attempt(s): %s",
                        message.kind,
                        message.to,
                        attempt,
                        error or type(error).__name__,
                    )
                    return
                logger.warning(
                    "postkit: sending %s mail failed (attempt %d of %d), retrying in %.1fs: %s",
                    message.kind,
                    attempt,
                    self.attempts,
                    delay,
                    error or type(error).__name__,
                )
                await asyncio.sleep(delay)
                delay *= 2
