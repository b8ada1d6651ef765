"""Sign-in rules: login throttling, auth sessions, refresh-token rotation and logout.

Every function takes the request's ``AsyncSession`` first and keyword-only arguments after it.
Functions that must make a write durable before answering an error (a throttled attempt, a
revoked token family) commit themselves, because the request's session rolls back on errors.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from postkit.errors import ErrorCode, PostKitError
from postkit.models import AuthSession, LoginAttempt, RefreshToken, User, utcnow
from postkit.plugins import HookRunner
from postkit.security import (
    PasswordHasher,
    TokenCodec,
    hash_refresh_token,
    new_refresh_token,
    new_session_id,
)

__all__ = [
    "IssuedTokens",
    "LoginThrottle",
    "end_all_sessions",
    "end_other_sessions",
    "end_session",
    "find_by_login",
    "invalid_credentials",
    "password_login",
    "refresh_session",
    "start_session",
    "throttle_keys",
]

# One in this many attempts also prunes expired rows of *other* keys (the table stays small
# without a scheduled job).
_GLOBAL_PRUNE_ODDS = 50


def throttle_keys(*, login: str, address: str) -> list[str]:
    """The counter keys of one login attempt: the account identifier and the client address.

    Stored as SHA-256 digests, so the table holds no typed-in email address in clear.
    """
    raw = [f"account:{login.strip().lower()}", f"ip:{address}"]
    return [hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest() for value in raw]


def _account_key(login: str) -> str:
    return throttle_keys(login=login, address="")[0]


def too_many_attempts(retry_after: int) -> PostKitError:
    """The 429 a throttled login gets."""
    return PostKitError(
        "Too many failed login attempts; try again later",
        status_code=429,
        code=ErrorCode.TOO_MANY_ATTEMPTS,
        headers={"Retry-After": str(retry_after)},
    )


@dataclass
class LoginThrottle:
    """Failed-login counters in ``postkit_login_attempts``, shared by every worker process.

    An attempt first *reserves* a row per key and commits it, then counts the rows in the window
    (its own included). Only if no key has more than ``max_failures`` rows is the password
    checked. A failed check keeps the rows: they are the failure record. A successful one deletes
    the reservation and the account's earlier failures; a refused (429) attempt deletes its own
    reservation, so being refused does not extend the lockout.

    Because every reservation is committed before its count, the attempts that get to check a
    password are never more than ``max_failures`` per window, however many run at once: the
    (n+1)-th of them would count the rows of the n others, which only a successful login
    removes.
    """

    max_failures: int
    window: timedelta

    async def reserve(self, session: AsyncSession, *, keys: list[str]) -> list[int]:
        """Record an attempt under each key and commit; return the ids of the reservations.

        :raises PostKitError: 429 ``TOO_MANY_ATTEMPTS`` with ``Retry-After`` when a key is over
            its limit (the reservation is withdrawn first).
        """
        now = utcnow()
        cutoff = now - self.window
        expired = LoginAttempt.attempted_at <= cutoff
        if secrets.randbelow(_GLOBAL_PRUNE_ODDS) != 0:
            expired = expired & LoginAttempt.key.in_(keys)
        await delete_attempts(session, expired)
        attempts = [LoginAttempt(key=key, attempted_at=now) for key in keys]
        session.add_all(attempts)
        await session.commit()
        ids = [attempt.id for attempt in attempts]

        retry_after = 0
        for key, own_id in zip(keys, ids, strict=True):
            times = (
                await session.scalars(
                    select(LoginAttempt.attempted_at)
                    .where(
                        LoginAttempt.key == key,
                        LoginAttempt.attempted_at > cutoff,
                        LoginAttempt.id != own_id,
                    )
                    .order_by(LoginAttempt.attempted_at)
                )
            ).all()
            if len(times) >= self.max_failures:
                # This attempt could pass once enough of the others leave the window that at
                # most max_failures - 1 remain.
                frees_at = times[len(times) - self.max_failures] + self.window
                retry_after = max(retry_after, math.ceil((frees_at - now).total_seconds()), 1)
        await session.commit()  # end the read transaction before writing again
        if retry_after:
            await self.release(session, ids=ids)
            raise too_many_attempts(retry_after)
        return ids

    async def release(self, session: AsyncSession, *, ids: list[int]) -> None:
        """Withdraw reservations (the attempt was refused) and commit."""
        await delete_attempts(session, LoginAttempt.id.in_(ids))
        await session.commit()

    async def succeeded(self, session: AsyncSession, *, ids: list[int], login: str) -> None:
        """Withdraw the reservations of a successful attempt and forget the failures counted
        against its account identifier (not committed: it goes with the login's own writes)."""
        await delete_attempts(
            session, LoginAttempt.id.in_(ids) | (LoginAttempt.key == _account_key(login))
        )


async def delete_attempts(session: AsyncSession, condition: ColumnElement[bool]) -> None:
    """Delete the login attempt rows matching ``condition``, skipping rows another transaction
    is deleting right now (``FOR UPDATE SKIP LOCKED`` on PostgreSQL): concurrent logins never
    wait on, or deadlock over, the same rows. SQLite serialises writers and ignores the clause.
    """
    doomed = select(LoginAttempt.id).where(condition).with_for_update(skip_locked=True)
    await session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(doomed)))


@dataclass(frozen=True)
class IssuedTokens:
    """An access token and the refresh token that goes with it."""

    access_token: str
    expires_in: int
    refresh_token: str
    session_id: str


async def _add_refresh_token(
    session: AsyncSession, *, session_id: str, ttl: timedelta, now: datetime
) -> str:
    token = new_refresh_token()
    session.add(
        RefreshToken(
            token_hash=hash_refresh_token(token),
            session_id=session_id,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return token


async def start_session(
    session: AsyncSession, *, user: User, tokens: TokenCodec, refresh_ttl: timedelta
) -> IssuedTokens:
    """Open an auth session for ``user`` (a login) with its first refresh token, and commit.

    Also prunes this user's expired refresh tokens and long-revoked sessions.
    """
    now = utcnow()
    await session.execute(
        delete(RefreshToken).where(
            RefreshToken.expires_at < now,
            RefreshToken.session_id.in_(
                select(AuthSession.id).where(AuthSession.user_id == user.id)
            ),
        )
    )
    await session.execute(
        delete(AuthSession).where(
            AuthSession.user_id == user.id,
            AuthSession.revoked_at < now - tokens.access_ttl - timedelta(seconds=tokens.leeway),
        )
    )
    session_id = new_session_id()
    session.add(AuthSession(id=session_id, user_id=user.id, created_at=now))
    await session.flush()
    refresh_token = await _add_refresh_token(
        session, session_id=session_id, ttl=refresh_ttl, now=now
    )
    await session.commit()
    access_token, expires_in = tokens.issue_access_token(
        user_id=user.id, session_id=session_id, token_version=user.token_version
    )
    return IssuedTokens(access_token, expires_in, refresh_token, session_id)


def invalid_refresh_token() -> PostKitError:
    """The one 401 for every refresh token that is refused (unknown, expired, spent, revoked)."""
    return PostKitError(
        "Invalid or expired refresh token",
        status_code=401,
        code=ErrorCode.INVALID_REFRESH_TOKEN,
    )


async def refresh_session(
    session: AsyncSession, *, refresh_token: str, tokens: TokenCodec, refresh_ttl: timedelta
) -> tuple[User, IssuedTokens]:
    """Spend ``refresh_token`` for a new access token and a new refresh token (rotation).

    The token is spent with a conditional ``UPDATE ... WHERE used_at IS NULL``: of two requests
    presenting it at once, exactly one updates the row. Presenting a spent token again (replay
    by a thief, or by the victim after the thief refreshed first) revokes the whole auth
    session, so every refresh token and access token of that login stops working.

    :raises PostKitError: 401 ``INVALID_REFRESH_TOKEN``.
    """
    digest = hash_refresh_token(refresh_token)
    row = (
        await session.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .join(User, User.id == AuthSession.user_id)
            .where(RefreshToken.token_hash == digest)
        )
    ).first()
    if row is None:
        raise invalid_refresh_token()
    stored, auth_session, user = row
    now = utcnow()
    if auth_session.revoked_at is not None or not user.is_active:
        raise invalid_refresh_token()
    spent: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        update(RefreshToken)
        .where(RefreshToken.token_hash == digest, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == auth_session.id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await session.commit()
        raise invalid_refresh_token()
    if stored.expires_at <= now:
        await session.commit()  # spent all the same: an expired token never comes back
        raise invalid_refresh_token()
    new_token = await _add_refresh_token(
        session, session_id=auth_session.id, ttl=refresh_ttl, now=now
    )
    await session.commit()
    access_token, expires_in = tokens.issue_access_token(
        user_id=user.id, session_id=auth_session.id, token_version=user.token_version
    )
    return user, IssuedTokens(access_token, expires_in, new_token, auth_session.id)


async def end_session(session: AsyncSession, *, session_id: str) -> None:
    """Revoke one auth session (logout): its refresh and access tokens stop working. Commits."""
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await session.commit()


async def end_all_sessions(session: AsyncSession, *, user: User) -> None:
    """Log ``user`` out everywhere and commit.

    Every session is revoked and ``token_version`` moves on, so every access token issued before
    stops verifying, whichever session it names.
    """
    await session.execute(
        update(User).where(User.id == user.id).values(token_version=User.token_version + 1)
    )
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await session.commit()
    await session.refresh(user, ["token_version"])


async def end_other_sessions(session: AsyncSession, *, user: User, keep_session_id: str) -> int:
    """Revoke every session of ``user`` except ``keep_session_id`` (not committed).

    Access tokens name their session, so revoking the sessions is enough to end their access
    tokens too; ``token_version`` stays, so the current session's tokens keep working.
    Returns how many sessions were revoked.
    """
    result: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        update(AuthSession)
        .where(
            AuthSession.user_id == user.id,
            AuthSession.id != keep_session_id,
            AuthSession.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)


def invalid_credentials() -> PostKitError:
    """The one 401 for a refused login, whether the account is unknown, inactive, or the
    password wrong: clients cannot tell which."""
    return PostKitError(
        "Incorrect email/username or password",
        status_code=401,
        code=ErrorCode.INVALID_CREDENTIALS,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def find_by_login(session: AsyncSession, *, login: str) -> User | None:
    """The user whose email or username is ``login`` (case-insensitive), active or not.

    Usernames cannot contain ``@``, so the two never collide; each lookup uses its unique index.
    """
    key = login.strip().lower()
    if "\x00" in key:
        return None  # no account has one, and PostgreSQL text cannot even hold it
    column = User.email if "@" in key else User.username
    return (await session.execute(select(User).where(column == key))).scalar_one_or_none()


async def password_login(
    session: AsyncSession,
    *,
    login: str,
    password: str,
    address: str,
    passwords: PasswordHasher,
    tokens: TokenCodec,
    throttle: LoginThrottle,
    refresh_ttl: timedelta,
    hooks: HookRunner,
) -> tuple[User, IssuedTokens]:
    """Check a password login and open an auth session for it.

    In order: reserve a throttle slot for the account identifier and the client address (429
    when either is over its limit), look the account up, verify the password in a worker thread
    (against a dummy hash when there is no account, so both paths cost the same), then, on
    success, upgrade an outdated hash, clear the account's failures, open the session, commit
    and call ``after_login``. No database transaction is open while the password is hashed.

    :raises PostKitError: 401 ``INVALID_CREDENTIALS`` or 429 ``TOO_MANY_ATTEMPTS``.
    """
    reservations = await throttle.reserve(session, keys=throttle_keys(login=login, address=address))
    user = await find_by_login(session, login=login)
    await session.commit()  # hand the connection back while bcrypt runs
    matches, new_hash = await passwords.verify(password, user.password_hash if user else None)
    if user is None or not matches or not user.is_active:
        raise invalid_credentials()  # the reservations stay: they are the failure record
    if new_hash is not None:
        user.password_hash = new_hash
    await throttle.succeeded(session, ids=reservations, login=login)
    issued = await start_session(session, user=user, tokens=tokens, refresh_ttl=refresh_ttl)
    await hooks.notify("after_login", user=user)
    return user, issued
