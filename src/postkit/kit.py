"""The :class:`PostKit` object: one per host app, owning everything a request needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.db import Database
from postkit.dependencies import UserDependencies
from postkit.models import Post, User
from postkit.plugins import HookRunner, build_plugin_manager
from postkit.security import PasswordHasher, TokenCodec
from postkit.settings import PostKitSettings

__all__ = ["PostKit"]


class PostKit:
    """Posts, votes and accounts for one FastAPI app.

    ::

        kit = PostKit(PostKitSettings(database_url=..., secret_key=...), plugins=[MyRules()])
        app = FastAPI(lifespan=kit.lifespan)
        app.include_router(kit.router)

    Two kits in one process share nothing: each has its own engine, plugin manager and router.

    :param settings: the configuration; read from ``POSTKIT_*`` environment variables when omitted.
    :param plugins: plugin objects (or modules) implementing hooks from :mod:`postkit.hookspecs`.
    """

    def __init__(
        self, settings: PostKitSettings | None = None, *, plugins: Sequence[object] = ()
    ) -> None:
        self.settings = settings if settings is not None else PostKitSettings()
        self.db = Database.from_settings(self.settings)
        self.plugin_manager = build_plugin_manager(plugins, discover=self.settings.discover_plugins)
        self.hooks = HookRunner(self.plugin_manager)
        self.passwords = PasswordHasher(self.settings.bcrypt_rounds)
        self.tokens = TokenCodec(self.settings)
        self._users = UserDependencies(self)
        self.session = self.db.session
        """FastAPI dependency yielding the request's ``AsyncSession``."""
        self.current_user = self._users.current_user
        """FastAPI dependency: the authenticated :class:`~postkit.models.User`, or 401."""
        self.optional_user = self._users.optional_user
        """FastAPI dependency: the authenticated :class:`~postkit.models.User`, or ``None`` when no
        token is sent (an invalid token is still a 401)."""
        self.current_auth = self._users.current_auth
        """FastAPI dependency: an :class:`~postkit.dependencies.Authenticated` (the user and the
        token's claims, such as its session id), or 401. For routes that act on the session."""
        self.router = self._build_router()
        """The :class:`~fastapi.APIRouter` to mount with ``app.include_router(kit.router)``."""

    def _build_router(self) -> APIRouter:
        from postkit.routers.auth import get_auth_router
        from postkit.routers.posts import get_posts_router
        from postkit.routers.users import get_users_router
        from postkit.routers.votes import get_votes_router

        router = APIRouter()
        router.include_router(get_auth_router(self))
        router.include_router(get_users_router(self))
        router.include_router(get_posts_router(self))
        router.include_router(get_votes_router(self))
        return router

    async def find_post(self, session: AsyncSession, *, post_id: int, user: User | None) -> Post:
        """The post ``user`` may see, for a host route that acts on posts (bookmarks, reports).

        The same rules as postkit's own routes: drafts only for their owner, and every plugin's
        ``post_query_filters``. Raises a :class:`~postkit.PostKitError` answered as 404
        ``POST_NOT_FOUND`` otherwise, so the host route needs no check of its own::

            post = await kit.find_post(session, post_id=post_id, user=user)

        :param session: the request's session (``Depends(kit.session, scope="function")``).
        :param post_id: the post asked for.
        :param user: the reader, or ``None`` for an anonymous reader.
        """
        from postkit.services.posts import find_post

        return await find_post(session, post_id=post_id, user=user, hooks=self.hooks)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI | Any = None) -> AsyncIterator[None]:
        """Start-up and shutdown for the host app: ``FastAPI(lifespan=kit.lifespan)``.

        Applies the migrations when ``auto_migrate`` is set, points the OpenAPI login form at
        wherever the host mounted the router, and disposes of the engine on shutdown. A host
        with a lifespan of its own enters this one inside it: ``async with kit.lifespan(app):``.
        """
        if self.settings.auto_migrate:
            from postkit.migrations import upgrade_async

            await upgrade_async(self.settings.database_url)
        if isinstance(app, FastAPI):
            self._users.bind_token_url(app)
        try:
            yield
        finally:
            await self.db.dispose()
