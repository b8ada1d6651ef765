"""Account rules: registration, password login, public profiles, changes to one's account,
deactivation, deletion and export.

Every method takes the request's ``AsyncSession`` first and keyword-only arguments after it,
and commits its own writes. No database transaction is open while a password is hashed.

Deleting an account happens in one transaction: its votes (on posts and on comments) are
withdrawn first (so every other item's counts stay exact), then its comments are deleted as
their author would delete them (kept with their author hidden under ``anonymize``), then its
posts are deleted or handed to the ``[deleted]`` placeholder account
(``account_deletion_posts``), then its sessions and refresh tokens go, then the account.
The placeholder is an ordinary, inactive row of ``postkit_users``, created the first time it
is needed: anonymised posts keep a real owner, so every read keeps its inner join on the
owner and its response shape (``owner`` is never null).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

import pydantic_core
from sqlalchemy import delete, false, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from postkit.errors import (
    AccountInUse,
    EmailChangeUnavailable,
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    ServiceBusy,
    UsernameTaken,
    UserNotFound,
    WrongCurrentPassword,
)
from postkit.models import MAX_ID, Post, User, Vote, utcnow
from postkit.plugins import HookRunner
from postkit.security import PasswordHasher
from postkit.services.account_mail import email_pending, forget_mailed_tokens
from postkit.services.sessions import Authenticated, IssuedTokens, Sessions
from postkit.services.throttle import LoginThrottle, throttle_keys
from postkit.services.votes import Votes

if TYPE_CHECKING:
    from postkit.services.account_mail import AccountMail
    from postkit.services.comments import Comments

__all__ = ["DELETED_USERNAME", "EXPORT_FORMAT_VERSION", "Accounts", "DeletionPosts"]

DeletionPosts = Literal["delete", "anonymize"]

DELETED_USERNAME = "[deleted]"
"""The username of the placeholder account that owns anonymised posts. No one can register it
(usernames are letters, digits and underscores) or sign in as it (it is inactive, with no
usable password)."""

_DELETED_EMAIL = "[deleted]"  # not an email address: registration can never take it
_UNUSABLE_PASSWORD_HASH = "!"  # noqa: S105 - no scheme recognises it: no password matches

EXPORT_FORMAT_VERSION = 1
"""The ``format_version`` of ``GET /users/me/export`` documents."""

_EXPORT_PAGE = 500  # rows read per query while an export streams

_GENERATED_USERNAME_TRIES = 5


def _subject(login: str) -> str:
    """Whom a password check is for, as the throttle counts it: what was typed (normalised).

    Not the account it names: a budget shared by an account's email and username would tell
    whoever exhausts it through the public username which email address answers "throttled"
    too, so each identifier keeps a budget of its own (an account has two), and an unknown one
    is counted exactly like a real one."""
    return f"login:{login.strip().lower()}"


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
    :param votes: withdraws a deleted account's votes.
    :param comments: withdraws a deleted account's comment votes and deletes (or, with
        ``deletion_posts="anonymize"``, anonymises) its comments.
    :param deletion_posts: what deleting an account does to its posts
        (``account_deletion_posts``).
    """

    def __init__(
        self,
        *,
        passwords: PasswordHasher,
        sessions: Sessions,
        throttle: LoginThrottle,
        hooks: HookRunner,
        mail: AccountMail | None = None,
        votes: Votes,
        comments: Comments | None = None,
        deletion_posts: DeletionPosts = "delete",
    ) -> None:
        self.passwords = passwords
        self.sessions = sessions
        self.throttle = throttle
        self.hooks = hooks
        self.mail = mail
        self.votes = votes
        self.comments = comments
        self.deletion_posts: DeletionPosts = deletion_posts

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
        self,
        session: AsyncSession,
        *,
        login: str,
        password: str,
        address: str,
        user_agent: str | None = None,
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

        ``user_agent`` (the client's ``User-Agent``) is kept with the session for the session
        list.

        :raises InvalidCredentials: unknown account, inactive account or wrong password, alike.
        :raises TooManyAttempts: a budget of the account or of the client's network is used up.
        :raises ServiceBusy: the password verification queue is full.
        """
        user = await self.find_by_login(session, login=login)
        admission = await self.throttle.admit(
            session, keys=throttle_keys(subject=_subject(login), address=address)
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
        issued = await self.sessions.start(session, user=user, user_agent=user_agent)
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

    async def _check_current_password(
        self, session: AsyncSession, *, user: User, password: str | None, address: str
    ) -> None:
        """Check ``user``'s current password under the login throttle's budgets (so a stolen
        access token cannot be used to guess it) and commit the check's record.

        :raises WrongCurrentPassword: no password, or a wrong one.
        :raises TooManyAttempts: too many wrong current passwords.
        :raises ServiceBusy: the password queue is full (nothing is counted).
        """
        if password is None:
            raise WrongCurrentPassword()
        admission = await self.throttle.admit(
            session, keys=throttle_keys(subject=_subject(user.email), address=address)
        )
        try:
            matches, _ = await self.passwords.verify(password, user.password_hash)
        except ServiceBusy:
            await self.throttle.withdraw(session, admission)
            raise
        if not matches:
            await self.throttle.failed(session, admission)
            raise WrongCurrentPassword()
        await self.throttle.succeeded(session, admission)
        await session.commit()  # the check is on record; no transaction open while hashing

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
            await self._check_current_password(
                session, user=user, password=current_password, address=address
            )
        if new_password is not None:
            user.password_hash = await self.passwords.hash(new_password)
            await self.throttle.password_changed(session, logins=[user.email, user.username])
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

    # --- Deactivation ---------------------------------------------------------------------------

    async def _ended_everywhere(self, session: AsyncSession, *, user_id: int, active: bool) -> User:
        user = await session.get(User, user_id) if 1 <= user_id <= MAX_ID else None
        if user is None:
            raise UserNotFound()
        user.is_active = active
        # Revokes every session and moves token_version on, committing is_active with them.
        await self.sessions.end_all(session, user=user)
        return user

    async def deactivate(self, session: AsyncSession, *, user_id: int) -> User:
        """Deactivate an account from host code and commit: it can no longer sign in, its
        profile answers 404, and every session it had is ended for good.

        Setting ``user.is_active = False`` by hand only suspends its tokens, which come back
        when it is set to ``True`` again. This call also revokes the sessions and moves
        ``token_version`` on, so no token issued before it ever works again, reactivated or not.

        :raises UserNotFound: no account has this id.
        """
        return await self._ended_everywhere(session, user_id=user_id, active=False)

    async def reactivate(self, session: AsyncSession, *, user_id: int) -> User:
        """Let a deactivated account sign in again, and commit. Only new logins work: tokens
        from before (even from before a hand-made ``is_active = False``) stay dead.

        :raises UserNotFound: no account has this id.
        """
        return await self._ended_everywhere(session, user_id=user_id, active=True)

    # --- Deletion -------------------------------------------------------------------------------

    async def _placeholder_id(self, session: AsyncSession) -> int:
        """The id of the ``[deleted]`` account, created on first use (race-free: a concurrent
        creation makes this insert do nothing, and the lookup after it finds that row)."""
        found = await session.scalar(select(User.id).where(User.username == DELETED_USERNAME))
        if found is not None:
            return found
        insert = (
            postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        )
        await session.execute(
            insert(User)
            .values(
                email=_DELETED_EMAIL,
                username=DELETED_USERNAME,
                password_hash=_UNUSABLE_PASSWORD_HASH,
                is_active=False,
            )
            .on_conflict_do_nothing()
        )
        created: int = (
            await session.execute(select(User.id).where(User.username == DELETED_USERNAME))
        ).scalar_one()
        return created

    async def delete(
        self, session: AsyncSession, *, user: User, current_password: str, address: str
    ) -> None:
        """Delete ``user``'s account after checking their password, in one transaction.

        The password is checked like ``PATCH /users/me``'s current password, under the login
        throttle. Then, with the account's row locked (so no vote or post of it lands midway):
        ``before_account_delete`` plugins run (they may refuse, or stage deletions of their
        own rows in ``session``), the account's votes are withdrawn with their weights, its
        posts are deleted or anonymised (``account_deletion_posts``), its sessions and refresh
        tokens are deleted, and the account is deleted. After the commit,
        ``after_account_delete`` runs.

        :raises WrongCurrentPassword: the password is wrong.
        :raises TooManyAttempts: too many wrong passwords.
        :raises AccountInUse: rows of the host still reference the account.
        :raises PostKitError: whatever a ``before_account_delete`` plugin raises.
        """
        await self._check_current_password(
            session, user=user, password=current_password, address=address
        )

        user_id, email, username = user.id, user.email, user.username
        locked = await session.scalar(select(User.id).where(User.id == user_id).with_for_update())
        if locked is None:
            raise InvalidToken()  # deleted by a concurrent request: its tokens are gone too
        await self.hooks.call("before_account_delete", user=user, session=session)
        await self.votes.withdraw_all(session, user_id=user_id)
        if self.comments is not None:
            await self.comments.withdraw_votes(session, user_id=user_id)
            await self.comments.remove_author(
                session, user_id=user_id, keep_bodies=self.deletion_posts == "anonymize"
            )
        owned = Post.owner_id == user_id
        if self.deletion_posts == "anonymize":
            placeholder = await self._placeholder_id(session)
            # Drafts were never public: they go. Published posts stay, unchanged but for owner.
            await session.execute(delete(Post).where(owned, Post.published == false()))
            await session.execute(
                update(Post)
                .where(owned)
                .values(owner_id=placeholder, updated_at=Post.updated_at)
                .execution_options(synchronize_session=False)
            )
        else:
            # Votes others cast on them go with them (foreign-key cascade).
            await session.execute(
                delete(Post).where(owned).execution_options(synchronize_session=False)
            )
        await self.sessions.remove_all(session, user_id=user_id)
        await session.execute(delete(User).where(User.id == user_id))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise AccountInUse() from None
        await self.hooks.notify(
            "after_account_delete", user_id=user_id, email=email, username=username
        )

    # --- Export ---------------------------------------------------------------------------------

    async def export(self, session: AsyncSession, *, user: User) -> AsyncIterator[bytes]:
        """``user``'s data as one JSON document (the ``AccountExport`` schema), in chunks.

        Posts (drafts included) and votes are read a page at a time, so a large account is
        never held in memory at once. ``session`` must stay open until the iterator is
        exhausted. Reads only.
        """
        profile = {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "created_at": user.created_at,
        }
        yield (
            b'{"format_version":'
            + pydantic_core.to_json(EXPORT_FORMAT_VERSION)
            + b',"exported_at":'
            + pydantic_core.to_json(utcnow())
            + b',"profile":'
            + pydantic_core.to_json(profile)
            + b',"posts":['
        )
        posts = (
            Post.id,
            Post.title,
            Post.content,
            Post.published,
            Post.created_at,
            Post.updated_at,
            Post.vote_count.label("votes"),
        )
        async for chunk in _paged_json(session, posts, key=Post.id, where=Post.owner_id == user.id):
            yield chunk
        yield b'],"votes":['
        votes = (Vote.post_id, Vote.weight, Vote.created_at)
        async for chunk in _paged_json(
            session, votes, key=Vote.post_id, where=Vote.user_id == user.id
        ):
            yield chunk
        yield b"]}"


async def _paged_json(
    session: AsyncSession,
    columns: tuple[Any, ...],
    *,
    key: InstrumentedAttribute[int],
    where: ColumnElement[bool],
) -> AsyncIterator[bytes]:
    """The rows of ``columns`` matching ``where``, as comma-separated JSON objects (keys: the
    columns' names), read ``_EXPORT_PAGE`` rows at a time in ``key`` order (keyset paging)."""
    after = 0
    separator = b""
    while True:
        statement = select(*columns).where(where, key > after).order_by(key).limit(_EXPORT_PAGE)
        rows = (await session.execute(statement)).all()
        for row in rows:
            yield separator + pydantic_core.to_json(row._asdict())
            separator = b","
        if len(rows) < _EXPORT_PAGE:
            return
        after = getattr(rows[-1], key.key)
