"""Failed-login counters: how many times a password may be guessed, per key, per window."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from postkit.errors import TooManyAttempts
from postkit.models import LoginAttempt, utcnow

__all__ = ["LoginThrottle", "delete_attempts", "throttle_keys"]

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

        :raises TooManyAttempts: when a key is over its limit (the reservation is withdrawn
            first).
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
            raise TooManyAttempts(retry_after)
        return ids

    async def release(self, session: AsyncSession, *, ids: list[int]) -> None:
        """Withdraw reservations (the attempt was refused) and commit."""
        await delete_attempts(session, LoginAttempt.id.in_(ids))
        await session.commit()

    async def succeeded(self, session: AsyncSession, *, ids: list[int], login: str) -> None:
        """Withdraw the reservations of a successful attempt and forget the failures counted
        against its account identifier. Not committed: it goes with the caller's own writes."""
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
