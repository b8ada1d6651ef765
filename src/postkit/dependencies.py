"""The FastAPI dependencies of one kit: the request's session, the authenticated user, the
client's address, and the route class with the kit's body limit.

:class:`Dependencies` is built by :class:`~postkit.PostKit` from explicit pieces (the database
and the session service) and shared by its routers and its host: ``kit.session``,
``kit.current_user``, ``kit.optional_user``, ``kit.verified_user`` and ``kit.current_auth`` are
its attributes.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import NoMatchFound

from postkit.db import Database
from postkit.errors import EmailNotVerified, NotAuthenticated
from postkit.models import User
from postkit.routing import body_limited_route
from postkit.services.sessions import Authenticated, Sessions

__all__ = ["LOGIN_ROUTE_NAME", "Authenticated", "Dependencies", "client_address"]

LOGIN_ROUTE_NAME = "postkit:login"
"""The login route's name, for ``app.url_path_for`` (the OpenAPI password flow points at it)."""


def client_address(request: Request) -> str:
    """The address login throttling counts against: the peer of the connection.

    Behind a reverse proxy this is the proxy unless the server trusts its forwarding headers
    (uvicorn ``--proxy-headers --forwarded-allow-ips``, gunicorn ``forwarded_allow_ips``).
    """
    return request.client.host if request.client else "unknown"


class Dependencies:
    """The dependencies one kit's routes and its host share.

    ``current_user`` / ``optional_user`` give the :class:`~postkit.models.User`;
    ``current_auth`` / ``optional_auth`` give an :class:`Authenticated` (the user and the
    token's claims, for routes that act on the auth session itself, like logout). ``reader`` is
    ``optional_user`` when ``public_reads`` is on, else ``current_user``.

    The ``*_param`` attributes are the same dependencies as ``Depends`` markers, declared once
    for the routers: ``session: Annotated[AsyncSession, deps.session_param]``.

    :param database: the kit's engine and session factory.
    :param sessions: checks access tokens against their auth sessions.
    :param max_body_bytes: request bodies over this answer 413 on the kit's routes.
    :param public_reads: whether anonymous clients may read posts and profiles.
    :param require_verified_email: whether postkit's write routes (posts, votes) need a
        verified email: ``writer`` is then ``verified_user``, else ``current_user``.
    """

    def __init__(
        self,
        *,
        database: Database,
        sessions: Sessions,
        max_body_bytes: int,
        public_reads: bool,
        require_verified_email: bool = False,
    ) -> None:
        self.sessions = sessions
        self.route_class = body_limited_route(max_body_bytes)
        # auto_error=False: postkit raises its own 401 with its own body. The token URL is a
        # placeholder until bind_token_url() sees where the host mounted the login route.
        self.bearer = OAuth2PasswordBearer(tokenUrl="login", auto_error=False)
        self.session: Callable[[], AsyncIterator[AsyncSession]] = database.session
        self.session_param: Any = Depends(database.session, scope="function")
        self.optional_auth = self._build_optional_auth()
        self.current_auth = self._build_current_auth()
        self.current_user = self._build_user(optional=False)
        self.optional_user = self._build_user(optional=True)
        self.reader = self.optional_user if public_reads else self.current_user
        self.verified_user = self._build_verified_user()
        self.writer = self.verified_user if require_verified_email else self.current_user
        self.current_auth_param: Any = Depends(self.current_auth)
        self.current_user_param: Any = Depends(self.current_user)
        self.optional_user_param: Any = Depends(self.optional_user)
        self.reader_param: Any = Depends(self.reader)
        self.verified_user_param: Any = Depends(self.verified_user)
        self.writer_param: Any = Depends(self.writer)

    def router(self, *, tags: list[str]) -> APIRouter:
        """A new router whose routes answer with postkit's error bodies and body limit."""
        return APIRouter(route_class=self.route_class, tags=list(tags))

    def _build_optional_auth(self) -> Callable[..., Awaitable[Authenticated | None]]:
        sessions = self.sessions

        async def optional_auth(
            token: Annotated[str | None, Depends(self.bearer)],
            session: Annotated[AsyncSession, self.session_param],
        ) -> Authenticated | None:
            if not token:
                return None
            return await sessions.authenticate(session, token)

        return optional_auth

    def _build_current_auth(self) -> Callable[..., Awaitable[Authenticated]]:
        async def current_auth(
            auth: Annotated[Authenticated | None, Depends(self.optional_auth)],
        ) -> Authenticated:
            if auth is None:
                raise NotAuthenticated()
            return auth

        return current_auth

    def _build_user(self, *, optional: bool) -> Callable[..., Awaitable[Any]]:
        async def resolve(
            auth: Annotated[Authenticated | None, Depends(self.optional_auth)],
        ) -> User | None:
            if auth is None:
                if optional:
                    return None
                raise NotAuthenticated()
            return auth.user

        resolve.__name__ = "optional_user" if optional else "current_user"
        return resolve

    def _build_verified_user(self) -> Callable[..., Awaitable[User]]:
        async def verified_user(user: Annotated[User, Depends(self.current_user)]) -> User:
            if user.email_verified_at is None:
                raise EmailNotVerified()
            return user

        return verified_user

    def bind_token_url(self, app: FastAPI) -> None:
        """Point the OpenAPI password flow at the login route's real path in ``app``.

        Wherever the host mounted the router (any prefix, nested routers, a ``root_path``
        behind a proxy), Swagger UI's "Authorize" form then posts to the right URL.
        """
        try:
            path = app.url_path_for(LOGIN_ROUTE_NAME)
        except NoMatchFound:
            return  # the host did not mount postkit's router in this app
        flows = cast(OAuth2Model, self.bearer.model).flows
        if flows.password is not None:
            flows.password.tokenUrl = f"{app.root_path.rstrip('/')}{path}"
        app.openapi_schema = None
