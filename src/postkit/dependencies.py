"""The authentication dependencies a :class:`~postkit.PostKit` hands to its routes and its host."""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, FastAPI
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.errors import ErrorCode, PostKitError
from postkit.models import AuthSession, User
from postkit.security import TokenError

if TYPE_CHECKING:
    from postkit.kit import PostKit

__all__ = ["UserDependencies", "invalid_token_error", "not_authenticated_error"]

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def not_authenticated_error() -> PostKitError:
    return PostKitError(
        "Not authenticated",
        status_code=401,
        code=ErrorCode.NOT_AUTHENTICATED,
        headers=BEARER_CHALLENGE,
    )


def invalid_token_error() -> PostKitError:
    # One body for every reason a token fails: expired, tampered, wrong key, revoked, unknown user.
    return PostKitError(
        "Invalid or expired token",
        status_code=401,
        code=ErrorCode.INVALID_TOKEN,
        headers=BEARER_CHALLENGE,
    )


class UserDependencies:
    """Builds ``current_user`` and ``optional_user`` for one kit."""

    LOGIN_ROUTE_NAME = "postkit:login"

    def __init__(self, kit: "PostKit") -> None:
        self.kit = kit
        # auto_error=False: postkit raises its own 401 with its own body.
        self.bearer = OAuth2PasswordBearer(tokenUrl="login", auto_error=False)
        self.current_user = self._build(optional=False)
        self.optional_user = self._build(optional=True)

    def _build(self, *, optional: bool) -> Callable[..., Awaitable[Any]]:
        kit = self.kit
        session_dep = Depends(kit.db.session, scope="function")

        async def resolve(
            token: Annotated[str | None, Depends(self.bearer)],
            session: Annotated[AsyncSession, session_dep],
        ) -> User | None:
            if not token:
                if optional:
                    return None
                raise not_authenticated_error()
            return await self.user_for_token(session, token)

        resolve.__name__ = "optional_user" if optional else "current_user"
        return resolve

    async def user_for_token(self, session: AsyncSession, token: str) -> User:
        """The active user a valid access token belongs to, or the one 401 for every failure."""
        try:
            claims = self.kit.tokens.verify_access_token(token)
        except TokenError:
            raise invalid_token_error() from None
        if claims.session_id is None:
            user = await session.get(User, claims.user_id)
            revoked = False
        else:
            row = (
                await session.execute(
                    select(User, AuthSession.revoked_at)
                    .join(AuthSession, AuthSession.user_id == User.id)
                    .where(User.id == claims.user_id, AuthSession.id == claims.session_id)
                )
            ).first()
            user, revoked = (row[0], row[1] is not None) if row else (None, False)
        if (
            user is None
            or revoked
            or not user.is_active
            or user.token_version != claims.token_version
        ):
            raise invalid_token_error()
        return user

    def bind_token_url(self, app: FastAPI) -> None:
        """Point the OpenAPI password flow at the login route's real path in ``app``."""
        for route in app.routes:
            if isinstance(route, APIRoute) and route.name == self.LOGIN_ROUTE_NAME:
                path = f"{app.root_path.rstrip('/')}{route.path}"
                flows = cast(OAuth2Model, self.bearer.model).flows
                if flows.password is not None:
                    flows.password.tokenUrl = path
                app.openapi_schema = None
                return
