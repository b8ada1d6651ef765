"""The FastAPI dependencies of one kit: the request's session, the authenticated user, the
client's address, the rate limits, and the route class with the kit's body limit.

:class:`Dependencies` is built by :class:`~postkit.PostKit` from explicit pieces (the database
and the session service) and shared by its routers and its host: ``kit.session``,
``kit.current_user``, ``kit.optional_user``, ``kit.verified_user`` and ``kit.current_auth`` are
its attributes.
"""

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import NoMatchFound

from postkit.db import Database
from postkit.errors import EmailNotVerified, InvalidToken, NotAuthenticated
from postkit.models import User
from postkit.ratelimit import (
    Per,
    RateLimits,
    address_partition,
    rate_limited_response,
    with_rate_limit_headers,
)
from postkit.routing import body_limited_route
from postkit.services.sessions import Authenticated, ReadAccess, Sessions, WriteAccess

__all__ = ["LOGIN_ROUTE_NAME", "Authenticated", "Dependencies", "ReadAccess", "client_address"]

LOGIN_ROUTE_NAME = "postkit:login"
"""The login route's name, for ``app.url_path_for`` (the OpenAPI password flow points at it)."""


def client_address(request: Request) -> str:
    """The address login throttling and per-address rate limits count against: the peer of
    the connection.

    Behind a reverse proxy this is the proxy unless the server trusts its forwarding headers
    (uvicorn ``--proxy-headers --forwarded-allow-ips``, gunicorn ``forwarded_allow_ips``).
    """
    return request.client.host if request.client else "unknown"


async def _accepts(when: Callable[[Request], bool | Awaitable[bool]], request: Request) -> bool:
    answer = when(request)
    return bool(await answer) if inspect.isawaitable(answer) else bool(answer)


async def changes_password(request: Request) -> bool:
    """Whether a JSON body sets ``password`` (read from the body FastAPI already received).
    A body that is not JSON is not counted: the route answers it 422."""
    try:
        body = await request.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("password") is not None


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
    :param rate_limits: the kit's rate limits, enforced by :meth:`rate_limit` dependencies.
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
        rate_limits: RateLimits,
        require_verified_email: bool = False,
    ) -> None:
        self.sessions = sessions
        self.reads = database.reads
        self.rate_limits = rate_limits
        # The rate limit fields go on every answer of a limited route, whatever it returns.
        self.route_class = with_rate_limit_headers(body_limited_route(max_body_bytes))
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
        # The read routes' fast path: the token check rides on the read's own statement.
        self.read_access = self._build_read_access(database, public_reads)
        self.read_access_param: Any = Depends(self.read_access)
        # The vote routes' fast path: the writer is checked inside the vote's transaction.
        self.write_access = self._build_write_access(database, require_verified_email)
        self.write_access_param: Any = Depends(self.write_access)

    def router(self, *, tags: list[str]) -> APIRouter:
        """A new router whose routes answer with postkit's error bodies and body limit."""
        return APIRouter(route_class=self.route_class, tags=list(tags))

    def rate_limit(
        self,
        name: str,
        *,
        rate: str | None = None,
        per: Per | None = None,
        when: Callable[[Request], bool | Awaitable[bool]] | None = None,
    ) -> Any:
        """A ``Depends`` marker that counts the request against the rate limit ``name`` and
        answers 429 ``RATE_LIMITED`` past it: ``dependencies=[deps.rate_limit("vote")]``.

        ``name`` is a built-in limit (``register``, ``login``, ``token_refresh``,
        ``password_change``, ``account_email``, ``post_create``, ``comment_create``, ``vote``,
        ``search``) or one defined here by giving ``rate`` (``"5/minute"``) and ``per``.
        ``when`` (sync or async, given the request) limits only the requests it accepts:
        ``GET /posts`` counts only searches, ``PATCH /users/me`` only password changes. A
        limit counted per account lets requests without a valid token through uncounted: the
        route answers them 401.
        """
        if rate is not None:
            policy = self.rate_limits.define(name, rate, per=per or "account")
        else:
            policy = self.rate_limits.policy(name)
        limits = self.rate_limits
        if not limits.active(policy.name):
            # Off (no rate, or rate limits disabled): nothing to count or check per request.
            async def unlimited() -> None:
                return None

            unlimited.__name__ = f"rate_limit_{policy.name}"
            return Depends(unlimited)

        if policy.per == "address":

            async def limit_by_address(request: Request, response: Response) -> None:
                if when is None or await _accepts(when, request):
                    partition = address_partition(client_address(request))
                    await limits.enforce(policy, partition, request=request, response=response)

            limit_by_address.__name__ = f"rate_limit_{policy.name}"
            return Depends(limit_by_address)

        sessions = self.sessions
        reads = self.reads

        async def limit_by_account(
            request: Request,
            response: Response,
            token: Annotated[str | None, Depends(self.bearer)],
        ) -> None:
            if when is not None and not await _accepts(when, request):
                return
            if token:
                # Only a token whose session is live counts against its account: a stolen
                # token, once its session is revoked, must not be able to spend the owner's
                # budget (a logged-out thief locking the owner out of a password change). The
                # check is one statement on its own pooled connection, returned at once, so
                # counting never holds a connection while it waits for another.
                try:
                    claims = sessions.verify(token)
                    await sessions.check_live(reads, claims)
                except InvalidToken:
                    return  # the route answers 401
                partition = f"user:{claims.user_id}"
            elif policy.per == "reader":
                partition = address_partition(client_address(request))
            else:
                return  # the route answers 401
            await limits.enforce(policy, partition, request=request, response=response)

        limit_by_account.__name__ = f"rate_limit_{policy.name}"
        return Depends(limit_by_account)

    def rate_limit_responses(self, *names: str) -> dict[int | str, dict[str, Any]]:
        """The OpenAPI 429 entry (with its headers) when any of the limits ``names`` is on."""
        if any(self.rate_limits.active(name) for name in names):
            return rate_limited_response()
        return {}

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

    def _build_read_access(
        self, database: Database, public_reads: bool
    ) -> Callable[..., Awaitable[ReadAccess]]:
        sessions = self.sessions
        reads = database.reads

        async def read_access(token: Annotated[str | None, Depends(self.bearer)]) -> ReadAccess:
            # The token's signature and claims now (a bad token is refused before any query);
            # its session with the read itself (ReadAccess.fetch). Each statement checks its
            # connection out and returns it: nothing to clean up after the route.
            claims = sessions.verify(token) if token else None
            if claims is None and not public_reads:
                raise NotAuthenticated()
            return ReadAccess(reads, sessions, claims)

        return read_access

    def _build_write_access(
        self, database: Database, require_verified: bool
    ) -> Callable[..., Awaitable[WriteAccess]]:
        sessions = self.sessions
        reads = database.reads

        async def write_access(token: Annotated[str | None, Depends(self.bearer)]) -> WriteAccess:
            # The signature and claims now; the session inside the write's own transaction.
            if not token:
                raise NotAuthenticated()
            return WriteAccess(
                reads, sessions, sessions.verify(token), require_verified=require_verified
            )

        return write_access

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
