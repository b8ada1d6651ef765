"""Account rules: registration, public profiles, and changes to one's own account.

Every function takes the request's ``AsyncSession`` first and keyword-only arguments after it.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.errors import ErrorCode, PostKitError
from postkit.models import User
from postkit.plugins import HookRunner
from postkit.security import PasswordHasher
from postkit.services.auth import LoginThrottle, end_other_sessions, throttle_keys

__all__ = [
    "LoginThrottle",
    "change_own_account",
    "get_public_user",
    "register_user",
]

_GENERATED_USERNAME_TRIES = 5


def _generated_username() -> str:
    # Random, so it reveals nothing about the email address.
    return f"user_{secrets.token_hex(5)}"


def email_taken() -> PostKitError:
    return PostKitError(
        "An account with this email already exists", status_code=409, code=ErrorCode.EMAIL_TAKEN
    )


def username_taken() -> PostKitError:
    return PostKitError("This username is taken", status_code=409, code=ErrorCode.USERNAME_TAKEN)


async def _username_exists(session: AsyncSession, username: str) -> bool:
    found = await session.scalar(select(User.id).where(User.username == username))
    return found is not None


async def register_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    username: str | None,
    passwords: PasswordHasher,
    hooks: HookRunner,
) -> User:
    """Create an account and commit it, then call ``after_user_register``.

    The email and username are stored lower case. Without a username a random one is
    generated. ``validate_registration`` plugins run before the (slow) password hash, so a
    refused registration costs nothing.

    :raises PostKitError: 409 ``EMAIL_TAKEN`` / ``USERNAME_TAKEN``; whatever a
        ``validate_registration`` plugin raises.
    """
    email = email.strip().lower()
    chosen = username.lower() if username else None
    taken = (
        await session.execute(
            select(User.email, User.username).where(
                or_(User.email == email, User.username == chosen) if chosen else User.email == email
            )
        )
    ).all()
    if any(row.email == email for row in taken):
        raise email_taken()
    if chosen is not None and taken:
        raise username_taken()
    if chosen is None:
        for _ in range(_GENERATED_USERNAME_TRIES):
            chosen = _generated_username()
            if not await _username_exists(session, chosen):
                break
    assert chosen is not None
    data: dict[str, Any] = {"email": email, "username": username}
    await hooks.call("validate_registration", email=email, username=chosen, data=data)
    user = User(email=email, username=chosen, password_hash=await passwords.hash(password))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        # Lost a race with a concurrent registration of the same email or username.
        await session.rollback()
        if await session.scalar(select(User.id).where(User.email == email)) is not None:
            raise email_taken() from None
        raise username_taken() from None
    await hooks.notify("after_user_register", user=user)
    return user


async def get_public_user(session: AsyncSession, *, user_id: int) -> User:
    """The active user ``user_id``.

    :raises PostKitError: 404 ``USER_NOT_FOUND`` (also for a deactivated account).
    """
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise PostKitError("User not found", status_code=404, code=ErrorCode.USER_NOT_FOUND)
    return user


def wrong_current_password() -> PostKitError:
    return PostKitError(
        "The current password is wrong",
        status_code=403,
        code=ErrorCode.WRONG_CURRENT_PASSWORD,
    )


async def change_own_account(
    session: AsyncSession,
    *,
    user: User,
    session_id: str,
    username: str | None = None,
    new_password: str | None = None,
    current_password: str | None = None,
    address: str,
    passwords: PasswordHasher,
    throttle: LoginThrottle,
) -> User:
    """Apply a user's changes to their own account and commit.

    A password change needs the current password, checked under the same throttle as logins
    (so a stolen access token cannot be used to guess it), and ends every *other* auth session
    of the user: their refresh and access tokens stop working while the session
    ``session_id`` that made the change carries on.

    :raises PostKitError: 409 ``USERNAME_TAKEN``; 403 ``WRONG_CURRENT_PASSWORD``;
        429 ``TOO_MANY_ATTEMPTS``.
    """
    if username is not None:
        username = username.lower()
        if username != user.username and await _username_exists(session, username):
            raise username_taken()
    if new_password is not None:
        if current_password is None:
            raise wrong_current_password()
        reservations = await throttle.reserve(
            session, keys=throttle_keys(login=user.email, address=address)
        )
        await session.commit()  # no transaction open while bcrypt runs
        matches, _ = await passwords.verify(current_password, user.password_hash)
        if not matches:
            raise wrong_current_password()
        new_hash = await passwords.hash(new_password)
        await throttle.succeeded(session, ids=reservations, login=user.email)
        user.password_hash = new_hash
        await end_other_sessions(session, user=user, keep_session_id=session_id)
    if username is not None:
        user.username = username
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise username_taken() from None
    return user
