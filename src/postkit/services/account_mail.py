"""Account rules that go through the mailbox: password reset, email verification, email change.

Each flow mails a link carrying a random token; only the token's SHA-256 digest is stored
(``postkit_account_tokens``), with a *fingerprint* of the account state it was issued for. A
token works once, until it expires, and only while that state holds: a reset link dies when the
password or the email changes, a verification link when the email changes, a change link when
either changes (so resetting the password cancels a change an intruder asked for).

Mail leaves through the kit's :class:`~postkit.mail.MailSender` after the writes that caused it
are committed; no request waits for a mail server. ``POST /password/forgot`` does the same work
whether or not the address has an account: it counts the request and queues a job, and the job,
off the request's path, looks the account up and issues the token.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from postkit.errors import (
    EmailTaken,
    InvalidResetToken,
    InvalidVerificationToken,
    TooManyEmailRequests,
)
from postkit.mail import MailMessage, MailSender
from postkit.models import AccountToken, LoginAttempt, User, utcnow
from postkit.plugins import HookRunner
from postkit.security import PasswordHasher, hash_refresh_token
from postkit.services.sessions import Sessions
from postkit.services.throttle import delete_attempts, network_of

__all__ = [
    "AccountMail",
    "MailLinks",
    "RequestCounter",
    "email_pending",
    "forget_mailed_tokens",
]

PASSWORD_RESET = "password_reset"  # noqa: S105 (a purpose, not a secret)
VERIFY_EMAIL = "verify_email"
CHANGE_EMAIL = "change_email"

_KEY_PREFIX = "mail:"  # keeps these counters apart from the login throttle's in the same table


def _fingerprint(purpose: str, user: User) -> str:
    """A digest of the account state a token of ``purpose`` stays valid for."""
    state = [purpose, str(user.id), user.email]
    if purpose != VERIFY_EMAIL:
        state.append(user.password_hash)
    return hashlib.sha256("\x00".join(state).encode("utf-8", "surrogatepass")).hexdigest()


async def email_pending(
    session: AsyncSession, email: str, *, except_user_id: int | None = None
) -> bool:
    """Whether ``email`` waits for confirmation as the new address of an account (other than
    ``except_user_id``): it is then refused to everyone else, like a taken one."""
    query = select(AccountToken.user_id).where(
        AccountToken.purpose == CHANGE_EMAIL,
        AccountToken.email == email,
        AccountToken.used_at.is_(None),
        AccountToken.expires_at > utcnow(),
    )
    if except_user_id is not None:
        query = query.where(AccountToken.user_id != except_user_id)
    return (await session.scalar(query.limit(1))) is not None


async def forget_mailed_tokens(session: AsyncSession, *, user: User) -> None:
    """Delete every mailed token of ``user`` (not committed). After a password change they
    could no longer be used anyway; deleting them frees an address a change was waiting for."""
    await session.execute(delete(AccountToken).where(AccountToken.user_id == user.id))


@dataclass(frozen=True)
class MailLinks:
    """Builds the links mail carries: ``base_url`` + a path with a ``{token}`` placeholder."""

    base_url: str
    reset_path: str
    verify_path: str

    def reset(self, token: str) -> str:
        return self.base_url + self.reset_path.format(token=token)

    def verify(self, token: str) -> str:
        return self.base_url + self.verify_path.format(token=token)


_NETWORKS_PER_ADDRESS = 10
"""How many networks' worth of reset requests one typed address may receive per window."""


@dataclass
class RequestCounter:
    """Counts mail requests per key in a sliding window, in the login throttle's table
    (``postkit_login_attempts``, keys prefixed ``mail:`` and stored as SHA-256 digests).

    :meth:`hit` counts each key's rows in the window and, when every key is under its limit,
    records one row per key and commits. Two requests at the very same moment may both pass at
    the limit: the bound is exact up to the number of concurrent requests, which is enough
    for mail (a password guess, by contrast, goes through the login throttle's reservations).
    """

    window: timedelta

    @staticmethod
    def key(*parts: str) -> str:
        raw = _KEY_PREFIX + ":".join(parts)
        return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()

    async def hit(self, session: AsyncSession, limits: Sequence[tuple[str, int]]) -> None:
        """Record a request under each ``(key, limit)`` and commit.

        :raises TooManyEmailRequests: a key already has ``limit`` requests in the window (then
            nothing is recorded).
        """
        now = utcnow()
        cutoff = now - self.window
        keys = [key for key, _ in limits]
        await delete_attempts(
            session, LoginAttempt.key.in_(keys) & (LoginAttempt.attempted_at <= cutoff)
        )
        retry_after = 0
        for key, limit in limits:
            times = (
                await session.scalars(
                    select(LoginAttempt.attempted_at)
                    .where(LoginAttempt.key == key, LoginAttempt.attempted_at > cutoff)
                    .order_by(LoginAttempt.attempted_at)
                )
            ).all()
            if len(times) >= limit:
                frees_at = times[len(times) - limit] + self.window
                retry_after = max(retry_after, math.ceil((frees_at - now).total_seconds()), 1)
        if retry_after:
            await session.commit()
            raise TooManyEmailRequests(retry_after)
        session.add_all([LoginAttempt(key=key, attempted_at=now) for key in keys])
        await session.commit()


class AccountMail:
    """Password reset, email verification and email change (``kit.account_mail``).

    :param sessionmaker: opens the sessions of background jobs (the forgotten-password lookup).
    :param passwords: hashes new passwords off the event loop.
    :param sessions: ends every session of an account whose password was reset.
    :param hooks: ``render_email`` composes the mail, ``after_password_reset`` is told.
    :param sender: the kit's background mail sender.
    :param links: builds the links in the mail.
    :param counter: counts mail requests.
    :param reset_ttl: how long a reset link works.
    :param verification_ttl: how long a verification or change link works.
    :param per_account: mail requests one address or account may make per window.
    :param per_client: mail requests one client address may make per window.
    """

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        passwords: PasswordHasher,
        sessions: Sessions,
        hooks: HookRunner,
        sender: MailSender,
        links: MailLinks,
        counter: RequestCounter,
        reset_ttl: timedelta,
        verification_ttl: timedelta,
        per_account: int,
        per_client: int,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.passwords = passwords
        self.sessions = sessions
        self.hooks = hooks
        self.sender = sender
        self.links = links
        self.counter = counter
        self.reset_ttl = reset_ttl
        self.verification_ttl = verification_ttl
        self.per_account = per_account
        self.per_client = per_client

    # --- Tokens and mail --------------------------------------------------------------------

    def _issue(
        self, session: AsyncSession, *, user: User, purpose: str, email: str, ttl: timedelta
    ) -> str:
        """Stage a new token for ``user`` (the caller commits); return it in clear."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        session.add(
            AccountToken(
                token_hash=hash_refresh_token(token),
                user_id=user.id,
                purpose=purpose,
                email=email,
                fingerprint=_fingerprint(purpose, user),
                created_at=now,
                expires_at=now + ttl,
            )
        )
        return token

    async def _prune(self, session: AsyncSession, *, user: User, purpose: str) -> None:
        """Forget ``user``'s earlier tokens of ``purpose`` (a new one replaces them)."""
        await session.execute(
            delete(AccountToken).where(
                AccountToken.user_id == user.id, AccountToken.purpose == purpose
            )
        )

    async def _compose(self, kind: str, *, user: User, link: str | None, to: str) -> MailMessage:
        answer = await self.hooks.first("render_email", kind=kind, user=user, link=link, to=to)
        if (
            not isinstance(answer, tuple)
            or len(answer) != 2
            or not all(isinstance(part, str) for part in answer)
        ):
            raise TypeError(f"render_email answered {answer!r} for {kind}, not (subject, body)")
        subject, text = answer
        return MailMessage(to=to, subject=subject, text=text, kind=kind, link=link)

    def _mail_later(self, kind: str, *, user: User, link: str | None, to: str) -> None:
        async def job() -> MailMessage:
            return await self._compose(kind, user=user, link=link, to=to)

        self.sender.submit(job)

    async def _find_token(
        self, session: AsyncSession, *, token: str, purposes: Sequence[str]
    ) -> tuple[AccountToken, User] | None:
        """The live token ``token`` of one of ``purposes`` and its account, or ``None`` when it
        is unknown, spent, expired, outdated, or its account is inactive."""
        if len(token) > 256:
            return None
        row = (
            await session.execute(
                select(AccountToken, User)
                .join(User, User.id == AccountToken.user_id)
                .where(
                    AccountToken.token_hash == hash_refresh_token(token),
                    AccountToken.purpose.in_(purposes),
                )
            )
        ).first()
        if row is None:
            return None
        stored, user = row
        if (
            stored.used_at is not None
            or stored.expires_at <= utcnow()
            or not user.is_active
            or not secrets.compare_digest(stored.fingerprint, _fingerprint(stored.purpose, user))
        ):
            return None
        return stored, user

    async def _spend(self, session: AsyncSession, *, stored: AccountToken, user: User) -> bool:
        """Mark ``stored`` used, if nobody did and the account is as it was; not committed.

        The conditions are in the ``UPDATE`` itself, so of two requests presenting one token at
        once exactly one spends it, and a token whose account changed meanwhile stays unspent.
        """
        unchanged = select(User.id).where(
            User.id == user.id,
            User.email == user.email,
            User.password_hash == user.password_hash,
        )
        result: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
            update(AccountToken)
            .where(
                AccountToken.token_hash == stored.token_hash,
                AccountToken.used_at.is_(None),
                AccountToken.user_id.in_(unchanged.scalar_subquery()),
            )
            .values(used_at=utcnow())
        )
        return result.rowcount == 1

    # --- Password reset ---------------------------------------------------------------------

    async def forgot_password(self, session: AsyncSession, *, email: str, address: str) -> None:
        """Count the request, then queue the reset mail's job; commits.

        The same statements run whether or not ``email`` has an account (the counters are keyed
        by the typed address), and the lookup runs later, on the sender: the answer cannot tell
        the two apart, by content or by time.

        :raises TooManyEmailRequests: the address or the client asked too often.
        """
        email = email.strip().lower()
        # Per address typed *and* network, so that someone asking for resets of a victim's
        # address from elsewhere never uses up the victim's own requests; the per-address cap
        # over every network (ten networks' worth) bounds how far their inbox can be flooded.
        await self.counter.hit(
            session,
            [
                (self.counter.key("client", address), self.per_client),
                (self.counter.key("reset", email, network_of(address)), self.per_account),
                (self.counter.key("reset", email), self.per_account * _NETWORKS_PER_ADDRESS),
            ],
        )

        async def job() -> MailMessage | None:
            async with self.sessionmaker() as background:
                user = (
                    await background.execute(select(User).where(User.email == email))
                ).scalar_one_or_none()
                if user is None or not user.is_active:
                    return None
                await self._prune(background, user=user, purpose=PASSWORD_RESET)
                token = self._issue(
                    background, user=user, purpose=PASSWORD_RESET, email=email, ttl=self.reset_ttl
                )
                await background.commit()
            return await self._compose(
                PASSWORD_RESET, user=user, link=self.links.reset(token), to=user.email
            )

        self.sender.submit(job)

    async def reset_password(self, session: AsyncSession, *, token: str, password: str) -> User:
        """Set a new password with a mailed reset token, end every session of the account,
        commit, then call ``after_password_reset``.

        Following the link proves the mailbox is the owner's, so an unverified address counts
        as verified afterwards. The account's other mailed tokens (a pending email change
        included) are forgotten.

        :raises InvalidResetToken: unknown, used, expired or outdated token, alike.
        """
        found = await self._find_token(session, token=token, purposes=[PASSWORD_RESET])
        await session.commit()  # no transaction open while bcrypt runs
        if found is None:
            raise InvalidResetToken()
        stored, user = found
        new_hash = await self.passwords.hash(password)
        if not await self._spend(session, stored=stored, user=user):
            await session.rollback()
            raise InvalidResetToken()
        await session.execute(
            delete(AccountToken).where(
                AccountToken.user_id == user.id, AccountToken.token_hash != stored.token_hash
            )
        )
        user.password_hash = new_hash
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()
        await session.flush()
        await self.sessions.end_all(session, user=user)  # commits
        await self.hooks.notify("after_password_reset", user=user)
        return user

    # --- Verification -----------------------------------------------------------------------

    async def send_verification(self, session: AsyncSession, *, user: User) -> None:
        """Issue a verification token for ``user``'s address, commit, and queue its mail."""
        await self._prune(session, user=user, purpose=VERIFY_EMAIL)
        token = self._issue(
            session, user=user, purpose=VERIFY_EMAIL, email=user.email, ttl=self.verification_ttl
        )
        await session.commit()
        self._mail_later(VERIFY_EMAIL, user=user, link=self.links.verify(token), to=user.email)

    async def resend_verification(self, session: AsyncSession, *, user: User, address: str) -> bool:
        """Mail ``user`` a new verification link, unless their address is verified already.
        Returns whether a mail was queued; commits.

        :raises TooManyEmailRequests: the account or the client asked too often.
        """
        await self.counter.hit(
            session,
            [
                (self.counter.key("client", address), self.per_client),
                (self.counter.key("verify", str(user.id)), self.per_account),
            ],
        )
        if user.email_verified_at is not None:
            return False
        await self.send_verification(session, user=user)
        return True

    async def verify(self, session: AsyncSession, *, token: str) -> User:
        """Spend a verification or email change token and commit: the address is verified, or
        the account's email becomes the new, now verified, address.

        :raises InvalidVerificationToken: unknown, used, expired or outdated token, alike.
        :raises EmailTaken: (a change) another account got the new address first.
        """
        found = await self._find_token(session, token=token, purposes=[VERIFY_EMAIL, CHANGE_EMAIL])
        if found is None:
            await session.commit()
            raise InvalidVerificationToken()
        stored, user = found
        if not await self._spend(session, stored=stored, user=user):
            await session.rollback()
            raise InvalidVerificationToken()
        now = utcnow()
        if stored.purpose == CHANGE_EMAIL:
            await session.execute(
                delete(AccountToken).where(
                    AccountToken.user_id == user.id, AccountToken.token_hash != stored.token_hash
                )
            )
            user.email = stored.email
        user.email_verified_at = now
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise EmailTaken() from None
        return user

    # --- Email change -----------------------------------------------------------------------

    async def request_email_change(self, session: AsyncSession, *, user: User, email: str) -> None:
        """Mail a confirmation link to ``email`` and a notice to the current address; commits.

        The account keeps its address until the link is followed (:meth:`verify`). The caller
        checked the current password and that ``email`` is free (:meth:`check_email_free`).
        """
        await self._prune(session, user=user, purpose=CHANGE_EMAIL)
        token = self._issue(
            session, user=user, purpose=CHANGE_EMAIL, email=email, ttl=self.verification_ttl
        )
        await session.commit()
        self._mail_later("confirm_email_change", user=user, link=self.links.verify(token), to=email)
        self._mail_later("email_change_notice", user=user, link=None, to=user.email)

    @staticmethod
    async def check_email_free(session: AsyncSession, *, user: User, email: str) -> None:
        """Refuse ``email`` as ``user``'s new address when another account has it or waits
        for it.

        :raises EmailTaken: it is taken or pending for someone else.
        """
        taken = await session.scalar(
            select(func.count()).select_from(User).where(User.email == email, User.id != user.id)
        )
        if taken or await email_pending(session, email, except_user_id=user.id):
            raise EmailTaken()
