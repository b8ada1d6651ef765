"""Auth sessions: what a login opens, what its tokens prove, refresh rotation and logout.

A login opens an auth session; its access tokens name it (``sid``) and its refresh tokens belong
to it. Revoking the session (logout) ends both at once, in every worker, on the very next
request: :meth:`Sessions.authenticate` checks the session with every access token.

A session also has a maximum lifetime (``session_max_lifetime``) counted from the login: past
it, refreshing fails and its access tokens stop working, however often it was refreshed. The
check rides on the same query as the revocation check, so it costs nothing extra.

``last_used_at`` moves at login and at each refresh, never on an access-token use: reads stay
free of writes, and a session is seen in use at least once per access-token lifetime.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, Table, bindparam, delete, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.driver import DriverReads, Row, Transaction
from postkit.errors import EmailNotVerified, InvalidRefreshToken, InvalidToken, SessionNotFound
from postkit.models import USER_AGENT_MAX_LENGTH, AuthSession, RefreshToken, User, detached, utcnow
from postkit.security import (
    AccessClaims,
    TokenCodec,
    TokenError,
    hash_refresh_token,
    new_refresh_token,
    new_session_id,
)

__all__ = [
    "Authenticated",
    "IssuedTokens",
    "ReadAccess",
    "SessionInfo",
    "Sessions",
    "WriteAccess",
]

DEFAULT_MAX_LIFETIME = timedelta(days=30)


@dataclass(frozen=True)
class IssuedTokens:
    """An access token and the refresh token that goes with it."""

    access_token: str
    expires_in: int
    refresh_token: str
    session_id: str


@dataclass(frozen=True)
class SessionInfo:
    """One live auth session of an account, as ``GET /sessions`` lists it."""

    id: str
    created_at: datetime
    last_used_at: datetime | None
    user_agent: str | None
    current: bool


@dataclass(frozen=True)
class Authenticated:
    """The user behind a valid access token, with the token's claims (its auth session id)."""

    user: User
    claims: AccessClaims


def _token_owner_statement() -> Select[User, datetime | None, datetime]:
    """The user and their auth session's revocation and start times, for a token's ``sub`` and
    ``sid``.

    Built once per :class:`Sessions` with bound parameters: constructing the statement on every
    request was about a tenth of a request's CPU time (benchmark profile).
    """
    return (
        select(User, AuthSession.revoked_at, AuthSession.created_at)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(User.id == bindparam("user_id"), AuthSession.id == bindparam("session_id"))
    )


_users = cast(Table, User.__table__)
_USER_FIELDS = tuple(column.key for column in _users.columns)
_OWNER_WIDTH = len(_USER_FIELDS) + 2  # the user's columns, the session's revoked_at, created_at
_CHECK_WIDTH = 5  # what a folded read carries: see _token_check_statement


def _token_check_statement() -> Select[Any]:
    """The columns the session check needs, and only those, for a token's ``sub`` and ``sid``:
    folded into a read, they repeat on every row of a page, so they are kept few."""
    return (
        select(
            _users.c.id.label("token_user_id"),
            _users.c.is_active.label("token_user_active"),
            _users.c.token_version.label("token_user_version"),
            AuthSession.revoked_at.label("session_revoked_at"),
            AuthSession.created_at.label("session_created_at"),
        )
        .join(AuthSession, AuthSession.user_id == _users.c.id)
        .where(
            _users.c.id == bindparam("token_user_id"),
            AuthSession.id == bindparam("token_session_id"),
        )
    )


def _token_owner_columns_statement() -> Select[Any]:
    """:func:`_token_owner_statement` as plain columns, for the fast path (no ORM identity)."""
    return (
        select(
            *_users.columns,
            AuthSession.revoked_at.label("session_revoked_at"),
            AuthSession.created_at.label("session_created_at"),
        )
        .join(AuthSession, AuthSession.user_id == _users.c.id)
        .where(
            _users.c.id == bindparam("token_user_id"),
            AuthSession.id == bindparam("token_session_id"),
        )
    )


def _detached_user(values: Sequence[Any]) -> User:
    # A User outside any session, as if loaded and detached (no pending changes to flush).
    return detached(User, zip(_USER_FIELDS, values, strict=False))


class ReadAccess:
    """A read route's reader: the kit's driver reads and the reader's access token,
    whose signature and claims are verified and whose auth session is checked **in the same
    round trip as the read** (:meth:`fetch`), or on its own when the user is needed first
    (:meth:`user`).

    Anonymous readers (``public_reads``) have no claims: :meth:`user` is ``None``.
    """

    __slots__ = ("_checked", "_claims", "_loaded", "_sessions", "_user", "reads")

    def __init__(self, reads: DriverReads, sessions: Sessions, claims: AccessClaims | None) -> None:
        self.reads = reads
        self._sessions = sessions
        self._claims = claims
        self._user: User | None = None
        self._checked = claims is None
        self._loaded = claims is None  # the User itself (a fold checks without loading it)

    @property
    def reader_id(self) -> int | None:
        """The reader's user id as the token claims it (checked before any row is answered)."""
        return self._claims.user_id if self._claims is not None else None

    async def user(self) -> User | None:
        """The reader, checked (:class:`~postkit.errors.InvalidToken` if the token's session
        is revoked or expired, or its user inactive or logged out everywhere)."""
        if not self._loaded:
            assert self._claims is not None
            self._user = await self._sessions.check_on(self.reads, self._claims)
            self._checked = self._loaded = True
        return self._user

    async def fetch(
        self, statement: Select[Any], params: dict[str, Any], *, order_desc: tuple[str, ...] = ()
    ) -> list[Row]:
        """The rows of ``statement``, with the reader's session checked in the same statement
        when it is not checked yet.

        :param order_desc: the columns of ``statement`` its rows are ordered by, descending
            (the folded statement orders by them again). Its first column must never be NULL.
        :raises InvalidToken: the token's session or user fails the check; no row is answered.
        """
        if self._checked:
            return await self.reads.fetch(statement, params)
        assert self._claims is not None
        rows = await self._sessions.fetch_checked(
            self.reads, self._claims, statement, params, order_desc=order_desc
        )
        self._checked = True
        return rows


class WriteAccess:
    """A write route's writer: the reader's verified claims, checked inside the write's own
    transaction (:meth:`user_in`), so that a revoked session writes nothing.

    :param require_verified: the ``require_verified_email`` setting: an unverified writer is
        refused with 403 ``EMAIL_NOT_VERIFIED``.
    """

    __slots__ = ("_claims", "_require_verified", "_sessions", "reads")

    def __init__(
        self,
        reads: DriverReads,
        sessions: Sessions,
        claims: AccessClaims,
        *,
        require_verified: bool = False,
    ) -> None:
        self.reads = reads
        self._sessions = sessions
        self._claims = claims
        self._require_verified = require_verified

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction on a pooled driver connection (:meth:`DriverReads.transaction`)."""
        return self.reads.transaction()

    async def user_in(self, transaction: Transaction) -> User:
        """The writer, checked in ``transaction`` (a detached :class:`User`).

        :raises InvalidToken: the token's session or user fails the check.
        :raises EmailNotVerified: ``require_verified_email`` is on and the email is not.
        """
        sessions = self._sessions
        rows = await transaction.execute(
            sessions._token_owner_columns, sessions._owner_params(self._claims)
        )
        if not rows:
            raise InvalidToken()
        user = sessions._checked_row(rows[0], self._claims)
        if self._require_verified and user.email_verified_at is None:
            raise EmailNotVerified()
        return user


class Sessions:
    """Opens, checks, rotates and ends auth sessions (``kit.sessions``).

    :param tokens: signs and verifies access tokens.
    :param refresh_ttl: how long a refresh token stays usable (``refresh_token_ttl``).
    :param max_lifetime: how long a login lasts at most, refreshed or not
        (``session_max_lifetime``).
    """

    def __init__(
        self,
        tokens: TokenCodec,
        *,
        refresh_ttl: timedelta,
        max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
    ) -> None:
        self.tokens = tokens
        self.refresh_ttl = refresh_ttl
        self.max_lifetime = max_lifetime
        self._token_owner = _token_owner_statement()
        self._token_owner_columns = _token_owner_columns_statement()
        self._token_check = _token_check_statement()
        self._folded: dict[tuple[int, tuple[str, ...]], tuple[Select[Any], Select[Any]]] = {}

    def _expired(self, created_at: datetime, now: datetime) -> bool:
        return created_at + self.max_lifetime <= now

    async def authenticate(self, session: AsyncSession, token: str) -> Authenticated:
        """The active user a valid access token belongs to.

        Besides the signature and claims, the token's auth session must exist, not be revoked
        (logout) and be younger than ``max_lifetime``, and its ``ver`` must match the user's
        ``token_version`` (logout everywhere, deactivation).

        :raises InvalidToken: for every reason a token fails, alike.
        """
        claims = self._claims(token)
        row = (
            await session.execute(
                self._token_owner,
                {"user_id": claims.user_id, "session_id": claims.session_id},
            )
        ).first()
        if row is None:
            raise InvalidToken()
        user, revoked_at, created_at = row
        return self._checked(user, revoked_at, created_at, claims)

    def verify(self, token: str) -> AccessClaims:
        """The claims of an access token whose signature and claims are valid; its auth session
        is not checked yet (:meth:`check_on`, :meth:`fetch_checked`).

        :raises InvalidToken: a token postkit did not issue, or one expired.
        """
        return self._claims(token)

    def _owner_params(self, claims: AccessClaims) -> dict[str, Any]:
        return {"token_user_id": claims.user_id, "token_session_id": claims.session_id}

    async def check_on(self, reads: DriverReads, claims: AccessClaims) -> User:
        """:meth:`authenticate`'s session and user checks on the fast path: one statement on a
        driver connection, no transaction. The user is detached (read routes only read it).

        :raises InvalidToken: for every reason a token fails, alike.
        """
        row = await reads.first(self._token_owner_columns, self._owner_params(claims))
        if row is None:
            raise InvalidToken()
        return self._checked_row(row, claims)

    async def check_live(self, reads: DriverReads, claims: AccessClaims) -> None:
        """:meth:`check_on`'s checks without loading the user: one short statement.

        :raises InvalidToken: for every reason a token fails, alike.
        """
        row = await reads.first(self._token_check, self._owner_params(claims))
        if row is None:
            raise InvalidToken()
        self._check_values(row, claims)

    def _check_values(self, row: Sequence[Any], claims: AccessClaims) -> None:
        _user_id, active, version, revoked_at, created_at = row[:_CHECK_WIDTH]
        if (
            revoked_at is not None
            or self._expired(created_at, utcnow())
            or not active
            or version != claims.token_version
        ):
            raise InvalidToken()

    async def fetch_checked(
        self,
        reads: DriverReads,
        claims: AccessClaims,
        statement: Select[Any],
        params: dict[str, Any],
        *,
        order_desc: tuple[str, ...] = (),
    ) -> list[Row]:
        """:meth:`check_on`'s checks and ``statement`` in one round trip: the token's session
        row (the few columns the check needs), outer joined to the statement's rows. Nothing
        is answered unless the check passes.

        :raises InvalidToken: for every reason a token fails, alike.
        """
        folded = self._fold(statement, order_desc)
        rows = await reads.fetch(folded, {**params, **self._owner_params(claims)})
        if not rows:
            raise InvalidToken()
        self._check_values(rows[0], claims)
        if rows[0][_CHECK_WIDTH] is None:
            return []  # the session row alone: the statement selected nothing
        return [row[_CHECK_WIDTH:] for row in rows]

    def _fold(self, statement: Select[Any], order_desc: tuple[str, ...]) -> Select[Any]:
        key = (id(statement), order_desc)
        cached = self._folded.get(key)
        if cached is not None and cached[0] is statement:
            return cached[1]
        owner = self._token_check.subquery("postkit_reader")
        read = statement.subquery("postkit_read")
        folded = select(*owner.c, *read.c).select_from(owner.outerjoin(read, true()))
        if order_desc:
            folded = folded.order_by(*(read.c[name].desc() for name in order_desc))
        if len(self._folded) >= 256:
            self._folded.clear()
        # The statement is kept with its fold, so that its id cannot be reused by another.
        self._folded[key] = (statement, folded)
        return folded

    def _checked_row(self, row: Sequence[Any], claims: AccessClaims) -> User:
        user = _detached_user(row[: _OWNER_WIDTH - 2])
        revoked_at, created_at = row[_OWNER_WIDTH - 2], row[_OWNER_WIDTH - 1]
        return self._checked(user, revoked_at, created_at, claims).user

    def _claims(self, token: str) -> AccessClaims:
        try:
            return self.tokens.verify_access_token(token)
        except TokenError:
            raise InvalidToken() from None

    def _checked(
        self, user: User, revoked_at: datetime | None, created_at: datetime, claims: AccessClaims
    ) -> Authenticated:
        if (
            revoked_at is not None
            or self._expired(created_at, utcnow())
            or not user.is_active
            or user.token_version != claims.token_version
        ):
            raise InvalidToken()
        return Authenticated(user=user, claims=claims)

    def _add_refresh_token(
        self, session: AsyncSession, *, session_id: str, started_at: datetime, now: datetime
    ) -> str:
        token = new_refresh_token()
        session.add(
            RefreshToken(
                token_hash=hash_refresh_token(token),
                session_id=session_id,
                created_at=now,
                # Never outlives its session.
                expires_at=min(now + self.refresh_ttl, started_at + self.max_lifetime),
            )
        )
        return token

    def _issue(self, user: User, session_id: str, refresh_token: str) -> IssuedTokens:
        access_token, expires_in = self.tokens.issue_access_token(
            user_id=user.id, session_id=session_id, token_version=user.token_version
        )
        return IssuedTokens(access_token, expires_in, refresh_token, session_id)

    async def start(
        self, session: AsyncSession, *, user: User, user_agent: str | None = None
    ) -> IssuedTokens:
        """Open an auth session for ``user`` (a login) with its first refresh token, and commit
        (with whatever the caller staged before).

        :param user_agent: the client's ``User-Agent``, kept (cut to 255 characters) for the
            session list.

        Also prunes this user's expired refresh tokens and long-ended sessions.
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
        forgotten_after = self.tokens.access_ttl + timedelta(seconds=self.tokens.leeway)
        await session.execute(
            delete(AuthSession).where(
                AuthSession.user_id == user.id,
                (AuthSession.revoked_at < now - forgotten_after)
                | (AuthSession.created_at < now - self.max_lifetime - forgotten_after),
            )
        )
        session_id = new_session_id()
        session.add(
            AuthSession(
                id=session_id,
                user_id=user.id,
                created_at=now,
                last_used_at=now,
                user_agent=_clean_user_agent(user_agent),
            )
        )
        await session.flush()
        refresh_token = self._add_refresh_token(
            session, session_id=session_id, started_at=now, now=now
        )
        await session.commit()
        return self._issue(user, session_id, refresh_token)

    async def refresh(
        self, session: AsyncSession, *, refresh_token: str
    ) -> tuple[User, IssuedTokens]:
        """Spend ``refresh_token`` for a new access token and a new refresh token (rotation).

        The token is spent with a conditional ``UPDATE ... WHERE used_at IS NULL``: of two
        requests presenting it at once, exactly one updates the row. Presenting a spent token
        again (replay by a thief, or by the victim after the thief refreshed first) revokes the
        whole auth session, so every refresh token and access token of that login stops working.
        A session past ``max_lifetime`` is revoked too. A successful refresh sets the session's
        ``last_used_at``.

        :raises InvalidRefreshToken: for every refused token, alike.
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
            raise InvalidRefreshToken()
        stored, auth_session, user = row
        now = utcnow()
        if auth_session.revoked_at is not None or not user.is_active:
            raise InvalidRefreshToken()
        if self._expired(auth_session.created_at, now):
            auth_session.revoked_at = now
            await session.commit()  # the session counts as ended from now on
            raise InvalidRefreshToken()
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
            await session.commit()  # the revocation stands, though the request is refused
            raise InvalidRefreshToken()
        if stored.expires_at <= now:
            await session.commit()  # spent all the same: an expired token never comes back
            raise InvalidRefreshToken()
        new_token = self._add_refresh_token(
            session, session_id=auth_session.id, started_at=auth_session.created_at, now=now
        )
        auth_session.last_used_at = now
        await session.commit()
        return user, self._issue(user, auth_session.id, new_token)

    async def end(self, session: AsyncSession, *, session_id: str) -> None:
        """Revoke one auth session (logout): its refresh and access tokens stop working.
        Commits."""
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        await session.commit()

    async def end_all(self, session: AsyncSession, *, user: User) -> None:
        """Log ``user`` out everywhere and commit.

        Every session is revoked and ``token_version`` moves on, so every access token issued
        before stops verifying, whichever session it names.
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

    async def end_others(self, session: AsyncSession, *, user: User, keep_session_id: str) -> int:
        """Revoke every session of ``user`` except ``keep_session_id``. Not committed: it goes
        with the caller's own writes (a password change).

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

    async def list_live(
        self, session: AsyncSession, *, user_id: int, current_session_id: str | None = None
    ) -> list[SessionInfo]:
        """The live auth sessions of ``user_id`` (not revoked, within ``max_lifetime``), newest
        first; ``current`` marks ``current_session_id``. Reads only."""
        rows = (
            await session.execute(
                select(
                    AuthSession.id,
                    AuthSession.created_at,
                    AuthSession.last_used_at,
                    AuthSession.user_agent,
                )
                .where(
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.created_at > utcnow() - self.max_lifetime,
                )
                .order_by(AuthSession.created_at.desc(), AuthSession.id)
            )
        ).all()
        return [
            SessionInfo(
                id=row.id,
                created_at=row.created_at,
                last_used_at=row.last_used_at,
                user_agent=row.user_agent,
                current=row.id == current_session_id,
            )
            for row in rows
        ]

    async def end_own(self, session: AsyncSession, *, user_id: int, session_id: str) -> None:
        """End one live session of ``user_id`` and commit (``DELETE /sessions/{id}``).

        :raises SessionNotFound: no live session of this user has that id; whether it belongs
            to someone else is never revealed.
        """
        ended: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
            update(AuthSession)
            .where(
                AuthSession.id == session_id,
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.created_at > utcnow() - self.max_lifetime,
            )
            .values(revoked_at=utcnow())
        )
        if ended.rowcount != 1:
            await session.rollback()
            raise SessionNotFound()
        await session.commit()

    async def remove_all(self, session: AsyncSession, *, user_id: int) -> None:
        """Delete every auth session of ``user_id`` and its refresh tokens (account deletion).
        Not committed: it goes with the caller's own writes."""
        owned = select(AuthSession.id).where(AuthSession.user_id == user_id)
        await session.execute(delete(RefreshToken).where(RefreshToken.session_id.in_(owned)))
        await session.execute(delete(AuthSession).where(AuthSession.user_id == user_id))


def _clean_user_agent(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    # PostgreSQL text cannot hold NUL; the list shows the first 255 characters.
    cleaned = user_agent.replace("\x00", "").strip()[:USER_AGENT_MAX_LENGTH]
    return cleaned or None
