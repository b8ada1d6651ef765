"""Account rules: registration, password login, public profiles, and changes to one's account.

Every method takes the request's ``AsyncSession`` first and keyword-only arguments after it,
and commits its own writes. No database transaction is open while a password is hashed.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.errors import (
    EmailChangeUnavailable,
    EmailTaken,
    InvalidCredentials,
    ServiceBusy,
    UsernameTaken,
    UserNotFound,
    WrongCurrentPassword,
)
from postkit.models import MAX_ID, User
from postkit.plugins import HookRunner
from postkit.security import PasswordHasher
from postkit.services.account_mail import email_pending, forget_mailed_tokens
from postkit.services.sessions import Authenticated, IssuedTokens, Sessions
from postkit.services.throttle import LoginThrottle, throttle_keys

if TYPE_CHECKING:
    from postkit.services.account_mail import AccountMail

__all__ = ["Accounts"]

_GENERATED_USERNAME_TRIES = 5


def _subject(user: User | None, login: str) -> str:
    """Whom a password check is for, as the throttle counts it: the account when it exists,
    else what was typed (normalised)."""
    return f"user:{user.id}" if user is not None else f"login:{login.strip().lower()}"


def _generated_username() -> str:
    # Random, so it reveals nothing about the email address.
    return f"user_{secrets.token_hex(5)}"


class Accounts:
    """Registration, login and account changes (``kit.accounts``).

    :param passwords: hashes and verifies passwords off the event loop.
    :param sessions: opens the auth session of a login, ends the others on a password change.
    :param throttle: counts failed password checks (logins and current-password checks).
    :param hooks: the kit's plugin hooks.
    :param mail: the mailed flows (verification at registration, email change), or ``None``
        when ``email_enabled`` is off.
    """

    def __init__(
        self,
        *,
        passwords: PasswordHasher,
        sessions: Sessions,
        throttle: LoginThrottle,
        hooks: HookRunner,
        mail: AccountMail | None = None,
    ) -> None:
        self.passwords = passwords
        self.sessions = sessions
        self.throttle = throttle
        self.hooks = hooks
        self.mail = mail

    async def _username_exists(self, session: AsyncSession, username: str) -> bool:
        found = await session.scalar(select(User.id).where(User.username == username))
        return found is not None

    async def register(
        self, session: AsyncSession, *, email: str, password: str, username: str | None = None
    ) -> User:
        """Create an account and commit it, then call ``after_user_register``.

        The email and username are stored lower case. Without a username a random one is
        generated. ``validate_registration`` plugins run before the (slow) password hash, so a
        refused registration costs nothing. With email on, a verification link is mailed to
        the address once the account is committed.

        :raises EmailTaken: another account has this email, or waits to confirm it as its new
            one.
        :raises UsernameTaken: another account has this username.
        :raises PostKitError: whatever a ``validate_registration`` plugin raises.
        :raises ServiceBusy: the queue of new password hashes is full.
        """
        self.passwords.hashing.check()  # a full hashing queue costs no database work
        email = email.strip().lower()
        chosen = username.lower() if username else None
        taken = (
            await session.execute(
                select(User.email, User.username).where(
                    or_(User.email == email, User.username == chosen)
                    if chosen
                    else User.email == email
                )
            )
        ).all()
        if any(row.email == email for row in taken) or await email_pending(session, email):
            raise EmailTaken()
        if chosen is not None and taken:
            raise UsernameTaken()
        if chosen is None:
            for _ in range(_GENERATED_USERNAME_TRIES):
                chosen = _generated_username()
                if not await self._username_exists(session, chosen):
                    break
        assert chosen is not None
        data: dict[str, Any] = {"email": email, "username": username}
        await self.hooks.call("validate_registration", email=email, username=chosen, data=data)
        user = User(email=email, username=chosen, password_hash=await self.passwords.hash(password))
        session.add(user)
        try:
            await session.commit()
        except IntegrityError:
            # Lost a race with a concurrent registration of the same email or username.
            await session.rollback()
            if await session.scalar(select(User.id).where(User.email == email)) is not None:
                raise EmailTaken() from None
            raise UsernameTaken() from None
        if self.mail is not None:
            await self.mail.send_verification(session, user=user)
        await self.hooks.notify("after_user_register", user=user)
        return user

    async def find_by_login(self, session: AsyncSession, *, login: str) -> User | None:
        """The user whose email or username is ``login`` (case-insensitive), active or not.

        Usernames cannot contain ``@``, so the two never collide; each lookup uses its unique
        index.
        """
        key = login.strip().lower()
        if "\x00" in key:
            return None  # no account has one, and PostgreSQL text cannot even hold it
        column = User.email if "@" in key else User.username
        return (await session.execute(select(User).where(column == key))).scalar_one_or_none()

    async def login(
        self, session: AsyncSession, *, login: str, password: str, address: str
    ) -> tuple[User, IssuedTokens]:
        """Check a password login and open an auth session for it.

        In order: look the account up, wait for room under its throttle budgets (429 when
        recorded failures used one up; see :mod:`postkit.services.throttle`), verify the
        password in a worker thread (against a dummy hash when there is no account, so both
        paths cost the same), then record a failure, or, on success, upgrade an outdated hash,
        clear the account's failures from this network, open the session, commit and call
        ``after_login``.

        The budgets are keyed on the account's id when it exists and on the normalised
        identifier when it does not, so its email and username share them; both paths make
        the same queries.

        :raises InvalidCredentials: unknown account, inactive account or wrong password, alike.
        :raises TooManyAttempts: a budget of the account or of the client's network is used up.
        :raises ServiceBusy: the password verification queue is full.
        """
        user = await self.find_by_login(session, login=login)
        admission = await self.throttle.admit(
            session, keys=throttle_keys(subject=_subject(user, login), address=address)
        )
        try:
            matches, new_hash = await self.passwords.verify(
                password, user.password_hash if user else None
            )
        except ServiceBusy:
            await self.throttle.withdraw(session, admission)  # no guess was checked
            raise
        if user is None or not matches or not user.is_active:
            await self.throttle.failed(session, admission)
            raise InvalidCredentials()
        if new_hash is not None:
            user.password_hash = new_hash
        await self.throttle.succeeded(session, admission)
        issued = await self.sessions.start(session, user=user)
        await self.hooks.notify("after_login", user=user)
        return user, issued

    async def get_public(self, session: AsyncSession, *, user_id: int) -> User:
        """The active user ``user_id``.

        :raises UserNotFound: no such user, a deactivated one, or an id out of range.
        """
        if not 1 <= user_id <= MAX_ID:
            raise UserNotFound()
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            raise UserNotFound()
        return user

    async def update(
        self,
        session: AsyncSession,
        *,
        auth: Authenticated,
        address: str,
        username: str | None = None,
        new_password: str | None = None,
        current_password: str | None = None,
        email: str | None = None,
    ) -> User:
        """Apply the authenticated user's changes to their own account and commit.

        A password change needs the current password, checked under the same throttle as
        logins (so a stolen access token cannot be used to guess it), and ends every *other*
        auth session of the user: their refresh and access tokens stop working while the
        session that made the change carries on.

        A new email needs the current password too, and takes effect only when the link mailed
        to the new address is followed; the current address is told. Until then the account
        keeps its address.

        :raises UsernameTaken: another account has the new username.
        :raises EmailTaken: another account has the new email, or waits to confirm it.
        :raises EmailChangeUnavailable: a new email while ``email_enabled`` is off.
        :raises WrongCurrentPassword: a new password or email without the right current
            password.
        :raises TooManyAttempts: too many wrong current passwords.
        :raises ServiceBusy: the password queues are full (nothing was changed).
        """
        user = auth.user
        if username is not None:
            username = username.lower()
            if username != user.username and await self._username_exists(session, username):
                raise UsernameTaken()
        new_email = email.strip().lower() if email is not None else None
        if new_email == user.email:
            new_email = None
        if new_email is not None:
            if self.mail is None:
                raise EmailChangeUnavailable()
            await self.mail.check_email_free(session, user=user, email=new_email)
        if new_password is not None or new_email is not None:
            if current_password is None:
                raise WrongCurrentPassword()
            admission = await self.throttle.admit(
                session, keys=throttle_keys(subject=_subject(user, user.email), address=address)
            )
            try:
                matches, _ = await self.passwords.verify(current_password, user.password_hash)
            except ServiceBusy:
                await self.throttle.withdraw(session, admission)
                raise
            if not matches:
                await self.throttle.failed(session, admission)
                raise WrongCurrentPassword()
            await self.throttle.succeeded(session, admission)
            await session.commit()  # the check is on record; no transaction open while hashing
        if new_password is not None:
            user.password_hash = await self.passwords.hash(new_password)
            await self.throttle.password_changed(session, user_id=user.id)
            # Links mailed before (a reset, a pending email change) die with the old password;
            # forget them, so an address they were changing to is free again.
            await forget_mailed_tokens(session, user=user)
            await self.sessions.end_others(
                session, user=user, keep_session_id=auth.claims.session_id
            )
        if username is not None:
            user.username = username
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise UsernameTaken() from None
        if new_email is not None:
            assert self.mail is not None
            await self.mail.request_email_change(session, user=user, email=new_email)
        return user
