"""The authentication dependencies a :class:`~postkit.PostKit` hands to its routes and its host."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, FastAPI
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import NoMatchFound

from postkit.errors import ErrorCode, PostKitError
from postkit.models import AuthSession, User
from postkit.security import AccessClaims, TokenError

if TYPE_CHECKING:
    from postkit.kit import PostKit

__all__ = [
    "BEARER_CHALLENGE",
    "Authenticated",
    "AuthenticationError",
    "UserDependencies",
    "invalid_token_error",
    "not_authenticated_error",
]

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _token_owner_statement() -> "Select[User, datetime | None]":
    """The user and their auth session's revocation time, for a token's ``sub`` and ``sid``.

    Built once per :class:`UserDependencies` with bound parameters: constructing the statement
    on every request was about a tenth of a request's CPU time (benchmark profile).
    """
    return (
        select(User, AuthSession.revoked_at)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(User.id == bindparam("user_id"), AuthSession.id == bindparam("session_id"))
    )


class AuthenticationError(PostKitError):
    """The 401 of the authentication dependencies, with its ``WWW-Authenticate`` challenge.

    Like every :class:`~postkit.errors.PostKitError` it is an HTTP exception, so a host's own
    routes answer it with 401 too, not a 500.
    """

    def __init__(self, detail: str, *, code: ErrorCode) -> None:
        super().__init__(detail, status_code=401, code=code, headers=BEARER_CHALLENGE)


def not_authenticated_error() -> AuthenticationError:
    """The 401 for a request that carries no bearer token at all."""
    return AuthenticationError("Not authenticated", code=ErrorCode.NOT_AUTHENTICATED)


def invalid_token_error() -> AuthenticationError:
    """The one 401 for every reason a token fails: expired, tampered, wrong key, revoked session,
    unknown or inactive user. Clients cannot tell the reasons apart, on purpose."""
    return AuthenticationError("Invalid or expired token", code=ErrorCode.INVALID_TOKEN)


@dataclass(frozen=True)
class Authenticated:
    """The user behind a valid access token, with the token's claims (its auth session id)."""

    user: User
    claims: AccessClaims


class UserDependencies:
    """Builds the authentication dependencies of one kit.

    ``current_user`` / ``optional_user`` give the :class:`~postkit.models.User`;
    ``current_auth`` / ``optional_auth`` give an :class:`Authenticated` (the user and the token's
    claims, for routes that act on the auth session itself, like logout).
    """

    LOGIN_ROUTE_NAME = "postkit:login"

    def __init__(self, kit: "PostKit") -> None:
        self.kit = kit
        self._token_owner = _token_owner_statement()
        # auto_error=False: postkit raises its own 401 with its own body. The token URL is a
        # placeholder until bind_token_url() sees where the host mounted the login route.
        self.bearer = OAuth2PasswordBearer(tokenUrl="login", auto_error=False)
        self.optional_auth = self._build_auth()
        self.current_auth = self._build_required_auth()
        self.current_user = self._build_user(optional=False)
        self.optional_user = self._build_user(optional=True)

    def _build_auth(self) -> Callable[..., Awaitable[Authenticated | None]]:
        session_dep = Depends(self.kit.db.session, scope="function")

        async def optional_auth(
            token: Annotated[str | None, Depends(self.bearer)],
            session: Annotated[AsyncSession, session_dep],
        ) -> Authenticated | None:
            if not token:
                return None
            return await self.authenticate(session, token)

        return optional_auth

    def _build_required_auth(self) -> Callable[..., Awaitable[Authenticated]]:
        async def current_auth(
            auth: Annotated[Authenticated | None, Depends(self.optional_auth)],
        ) -> Authenticated:
            if auth is None:
                raise not_authenticated_error()
            return auth

        return current_auth

    def _build_user(self, *, optional: bool) -> Callable[..., Awaitable[Any]]:
        async def resolve(
            auth: Annotated[Authenticated | None, Depends(self.optional_auth)],
        ) -> User | None:
            if auth is None:
                if optional:
                    return None
                raise not_authenticated_error()
            return auth.user

        resolve.__name__ = "optional_user" if optional else "current_user"
        return resolve

    async def authenticate(self, session: AsyncSession, token: str) -> Authenticated:
        """The active user a valid access token belongs to, or the one 401 for every failure.

        Besides the signature and claims, the token's auth session must exist and not be revoked
        (logout), and its ``ver`` must match the user's ``token_version`` (logout everywhere).
        An invalid token is refused even on routes where anonymous access is allowed: a client
        holding a stale token learns that it must refresh instead of silently being anonymous.
        """
        try:
            claims = self.kit.tokens.verify_access_token(token)
        except TokenError:
            raise invalid_token_error() from None
        row = (
            await session.execute(
                self._token_owner,
                {"user_id": claims.user_id, "session_id": claims.session_id},
            )
        ).first()
        if row is None:
            raise invalid_token_error()
        user, revoked_at = row
        if (
            revoked_at is not None
            or not user.is_active
            or user.token_version != claims.token_version
        ):
            raise invalid_token_error()
        return Authenticated(user=user, claims=claims)

    def bind_token_url(self, app: FastAPI) -> None:
        """Point the OpenAPI password flow at the login route's real path in ``app``.

        Wherever the host mounted the router (any prefix, nested routers, a ``root_path``
        behind a proxy), Swagger UI's "Authorize" form then posts to the right URL.
        """
        try:
            path = app.url_path_for(self.LOGIN_ROUTE_NAME)
        except NoMatchFound:
            return  # the host did not mount postkit's router in this app
        flows = cast(OAuth2Model, self.bearer.model).flows
        if flows.password is not None:
            flows.password.tokenUrl = f"{app.root_path.rstrip('/')}{path}"
        app.openapi_schema = None
