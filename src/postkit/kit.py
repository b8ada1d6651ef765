"""The :class:`PostKit` object: one per host app, owning everything a request needs."""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.db import Database
from postkit.dependencies import Dependencies
from postkit.mail import LoggingMailer, Mailer, MailSender, mailer_from_settings
from postkit.models import Post, User
from postkit.plugins import HookRunner, build_plugin_manager
from postkit.ratelimit import Per, RateLimits
from postkit.routers.account_mail import get_account_mail_router
from postkit.routers.auth import get_auth_router
from postkit.routers.comments import get_comments_router
from postkit.routers.posts import get_posts_router
from postkit.routers.sessions import get_sessions_router
from postkit.routers.users import get_users_router
from postkit.routers.votes import get_votes_router
from postkit.routing import install_error_handlers
from postkit.security import PasswordHasher, TokenCodec
from postkit.services.account_mail import AccountMail, MailLinks, RequestCounter
from postkit.services.accounts import Accounts
from postkit.services.comments import Comments
from postkit.services.posts import Posts
from postkit.services.sessions import Sessions
from postkit.services.throttle import LoginThrottle
from postkit.services.votes import Votes
from postkit.settings import PostKitSettings

__all__ = ["PostKit"]

logger = logging.getLogger("postkit")


class PostKit:
    """Posts, votes and accounts for one FastAPI app.

    ::

        kit = PostKit(PostKitSettings(database_url=..., secret_key=...), plugins=[MyRules()])
        app = FastAPI(lifespan=kit.lifespan)
        app.include_router(kit.router)

    Two kits in one process share nothing: each has its own engine, plugin manager, services
    and router.

    The services are the API host code calls, with the request's session (``kit.session``):
    :attr:`accounts`, :attr:`sessions`, :attr:`account_mail`, :attr:`posts`, :attr:`votes`
    and :attr:`comments`.
    Each commits its own writes; the session dependency commits nothing and rolls back what is
    left.

    :param settings: the configuration; read from ``POSTKIT_*`` environment variables when omitted.
    :param plugins: plugin objects (or modules) implementing hooks from :mod:`postkit.hookspecs`.
    :param mailer: what sends postkit's mail (a :class:`~postkit.mail.Mailer`); by default an
        :class:`~postkit.mail.SmtpMailer` when ``smtp_host`` is set, else a
        :class:`~postkit.mail.LoggingMailer`. Tests pass a :class:`~postkit.mail.MemoryOutbox`.
    """

    def __init__(
        self,
        settings: PostKitSettings | None = None,
        *,
        plugins: Sequence[object] = (),
        mailer: Mailer | None = None,
    ) -> None:
        self.settings = settings if settings is not None else PostKitSettings()
        settings = self.settings
        self.db = Database.from_settings(settings)
        self.plugin_manager = build_plugin_manager(plugins, discover=settings.discover_plugins)
        self.hooks = HookRunner(self.plugin_manager)
        self.passwords = PasswordHasher.from_settings(settings)
        self.tokens = TokenCodec(settings)

        self.sessions = Sessions(
            self.tokens,
            refresh_ttl=settings.refresh_token_ttl,
            max_lifetime=settings.session_max_lifetime,
        )
        """Auth sessions: :meth:`~postkit.services.sessions.Sessions.authenticate`, refresh,
        the session list and logout."""
        self.posts = Posts(self.hooks, revisions_visible_to=settings.revisions_visible_to)
        """Post reads and writes under the reader's visibility rules and the post hooks."""
        self.votes = Votes(
            posts=self.posts, hooks=self.hooks, allow_downvotes=settings.allow_downvotes
        )
        """Votes with exact counters and the vote hooks."""
        self.comments = Comments(
            posts=self.posts,
            hooks=self.hooks,
            max_depth=settings.comment_max_depth,
            allow_downvotes=settings.allow_downvotes,
            revisions_visible_to=settings.revisions_visible_to,
        )
        """Threaded comments on posts: exact counters, comment votes, edit history, and the
        comment hooks."""
        self.mail_sender = MailSender(
            mailer if mailer is not None else mailer_from_settings(settings),
            attempts=settings.mail_send_attempts,
            retry_delay=settings.mail_retry_delay,
            queue_size=settings.mail_queue_size,
        )
        """The background sender every mail goes through, after the commit that caused it."""
        self.account_mail = AccountMail(
            sessionmaker=self.db.sessionmaker,
            passwords=self.passwords,
            sessions=self.sessions,
            hooks=self.hooks,
            sender=self.mail_sender,
            links=MailLinks(
                base_url=settings.link_base_url,
                reset_path=settings.reset_url_path,
                verify_path=settings.verify_url_path,
            ),
            counter=RequestCounter(window=settings.email_request_window),
            reset_ttl=settings.password_reset_ttl,
            verification_ttl=settings.email_verification_ttl,
            per_account=settings.email_requests_per_account,
            per_client=settings.email_requests_per_client,
        )
        """Password reset, email verification and email change (used when ``email_enabled``)."""
        self.accounts = Accounts(
            passwords=self.passwords,
            sessions=self.sessions,
            throttle=LoginThrottle.from_settings(settings),
            hooks=self.hooks,
            mail=self.account_mail if settings.email_enabled else None,
            votes=self.votes,
            comments=self.comments,
            deletion_posts=settings.account_deletion_posts,
        )
        """Registration, login, profiles, account changes, deactivation, deletion and export."""

        self.rate_limits = RateLimits.from_settings(settings, engine=self.db.engine)
        """The rate limits: their policies (``kit.rate_limits.policies``), their store (the
        database, or Redis when ``redis_url`` is set) and :meth:`define
        <postkit.ratelimit.RateLimits.define>` for a host's own."""

        self.dependencies = Dependencies(
            database=self.db,
            sessions=self.sessions,
            max_body_bytes=settings.max_body_bytes,
            public_reads=settings.public_reads,
            rate_limits=self.rate_limits,
            require_verified_email=settings.require_verified_email,
        )
        deps = self.dependencies
        self.session = deps.session
        """FastAPI dependency yielding the request's ``AsyncSession``. It commits nothing: a
        host route commits its own writes (``await session.commit()``), and whatever is left
        uncommitted when the route is done is rolled back. Declare it with
        ``Depends(kit.session, scope="function")`` so it closes before the response is sent."""
        self.current_user = deps.current_user
        """FastAPI dependency: the authenticated :class:`~postkit.models.User`, or 401."""
        self.optional_user = deps.optional_user
        """FastAPI dependency: the authenticated :class:`~postkit.models.User`, or ``None`` when no
        token is sent (an invalid token is still a 401)."""
        self.verified_user = deps.verified_user
        """FastAPI dependency: like :attr:`current_user`, but an account whose email is not
        verified answers 403 ``EMAIL_NOT_VERIFIED``."""
        self.current_auth = deps.current_auth
        """FastAPI dependency: an :class:`~postkit.services.sessions.Authenticated` (the user and
        the token's claims, such as its session id), or 401. For routes that act on the
        session."""
        self.router = self._build_router()
        """The :class:`~fastapi.APIRouter` to mount with ``app.include_router(kit.router)``."""

    def _build_router(self) -> APIRouter:
        deps = self.dependencies
        # The hot routes first: a request is matched against routes in order, and each miss
        # costs (postkit's paths do not overlap between areas, so the order changes nothing
        # else but the order of the OpenAPI document's paths).
        areas = [
            get_posts_router(self.posts, deps, self.settings),
            get_votes_router(self.votes, deps),
            get_comments_router(self.comments, deps, self.settings),
            get_auth_router(self.accounts, self.sessions, deps),
            get_users_router(
                self.accounts,
                deps,
                password_min_length=self.settings.password_min_length,
                email_changes=self.settings.email_enabled,
            ),
        ]
        if self.settings.email_enabled:
            areas.append(
                get_account_mail_router(
                    self.account_mail, deps, password_min_length=self.settings.password_min_length
                )
            )
        areas.append(get_sessions_router(self.sessions, deps))
        # One flat router holding every area's routes (each already carries its area's tags,
        # route class and dependencies), not a router of included routers: FastAPI walks the
        # tree of included routers on every request and rescans each level's routes, so each
        # level of nesting costs every request its bookkeeping and a few more route matches.
        return APIRouter(routes=[route for area in areas for route in area.routes])

    def rate_limit(
        self,
        name: str,
        *,
        rate: str | None = None,
        per: Per | None = None,
        when: Callable[[Request], bool | Awaitable[bool]] | None = None,
    ) -> Any:
        """A ``Depends`` marker applying a rate limit to a host's own route::

            @app.post("/reports", dependencies=[kit.rate_limit("reports", rate="5/hour")])

        ``name`` is one of postkit's limits (``register``, ``login``, ``token_refresh``,
        ``password_change``, ``account_email``, ``post_create``, ``comment_create``, ``vote``,
        ``search``: their rates come from settings and their counters are shared with
        postkit's routes), or a new
        one given with its ``rate`` and ``per`` (``"account"``, the default, ``"address"`` or
        ``"reader"``). Past the limit the route answers 429 ``RATE_LIMITED`` with
        ``Retry-After`` and the ``RateLimit`` fields. Document it with
        ``responses=kit.dependencies.rate_limit_responses(name)``.
        """
        return self.dependencies.rate_limit(name, rate=rate, per=per, when=when)

    @property
    def mailer(self) -> Mailer:
        """What sends postkit's mail; assign another :class:`~postkit.mail.Mailer` to replace it."""
        return self.mail_sender.mailer

    @mailer.setter
    def mailer(self, mailer: Mailer) -> None:
        self.mail_sender.mailer = mailer

    def install_error_handlers(self, app: FastAPI) -> None:
        """Make the host's own routes answer like postkit's: ``kit.install_error_handlers(app)``.

        A :class:`~postkit.errors.PostKitError` raised there answers ``{"detail", "code"}``, and
        a lost database link, an exhausted pool or a query timeout answers 503
        ``DATABASE_UNAVAILABLE`` with ``Retry-After`` instead of a 500. See
        :func:`postkit.routing.install_error_handlers`.
        """
        install_error_handlers(app)

    async def find_post(self, session: AsyncSession, *, post_id: int, user: User | None) -> Post:
        """Deprecated alias of :meth:`kit.posts.find <postkit.services.posts.Posts.find>`; it
        will be removed in the next release."""
        warnings.warn(
            "kit.find_post() is deprecated; use kit.posts.find()", DeprecationWarning, stacklevel=2
        )
        return await self.posts.find(session, post_id=post_id, user=user)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI | Any = None) -> AsyncIterator[None]:
        """Start-up and shutdown for the host app: ``FastAPI(lifespan=kit.lifespan)``.

        Applies the migrations when ``auto_migrate`` is set, points the OpenAPI login form at
        wherever the host mounted the router, starts the background mail sender, and on
        shutdown lets it drain (up to 10 seconds) and disposes of the engine. A host
        with a lifespan of its own enters this one inside it: ``async with kit.lifespan(app):``.
        """
        if self.settings.auto_migrate:
            from postkit.migrations import upgrade_async

            await upgrade_async(self.settings.database_url)
        if isinstance(app, FastAPI):
            self.dependencies.bind_token_url(app)
        self._warn_about_mail()
        self.mail_sender.start()
        try:
            yield
        finally:
            try:
                await self.mail_sender.close()
            finally:
                await self.rate_limits.close()
                await self.db.dispose()

    def _warn_about_mail(self) -> None:
        settings = self.settings
        if (
            settings.email_enabled
            and settings.environment == "production"
            and isinstance(self.mailer, LoggingMailer)
        ):
            logger.warning(
                "postkit: email_enabled is on in production but no smtp_host is set: password "
                "reset and verification mail is only LOGGED, links included, and never sent. "
                "Set POSTKIT_SMTP_HOST (and the other smtp_* settings) or pass mailer= to "
                "PostKit."
            )
