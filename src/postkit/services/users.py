"""Account rules: registration and password login."""

from __future__ import annotations

import secrets

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.errors import ErrorCode, PostKitError
from postkit.models import User
from postkit.plugins import HookRunner
from postkit.security import PasswordHasher

__all__ = ["authenticate", "register_user"]


def _generated_username() -> str:
    # Random, so it reveals nothing about the email address.
    return f"user_{secrets.token_hex(5)}"


async def register_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    username: str | None,
    passwords: PasswordHasher,
    hooks: HookRunner,
) -> User:
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
        raise PostKitError(
            "An account with this email already exists", status_code=409, code=ErrorCode.EMAIL_TAKEN
        )
    if chosen and taken:
        raise PostKitError("This username is taken", status_code=409, code=ErrorCode.USERNAME_TAKEN)
    user = User(
        email=email,
        username=chosen or _generated_username(),
        password_hash=await passwords.hash(password),
    )
    await hooks.call(
        "validate_registration", email=user.email, username=user.username, data={"email": email}
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        # Lost a race with a concurrent registration of the same email or username.
        await session.rollback()
        raise PostKitError(
            "An account with this email or username already exists",
            status_code=409,
            code=ErrorCode.EMAIL_TAKEN,
        ) from None
    await hooks.notify("after_user_register", user=user)
    return user


async def authenticate(
    session: AsyncSession, *, login: str, password: str, passwords: PasswordHasher
) -> User | None:
    """The active user whose email or username is ``login`` and whose password matches."""
    key = login.strip().lower()
    user = (
        await session.execute(
            select(User).where(or_(func.lower(User.email) == key, User.username == key))
        )
    ).scalar_one_or_none()
    matches, new_hash = await passwords.verify(password, user.password_hash if user else None)
    if user is None or not matches or not user.is_active:
        return None
    if new_hash is not None:
        user.password_hash = new_hash
    return user
