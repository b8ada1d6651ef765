"""Login: ``POST /login`` (OAuth2 password form)."""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import UserDependencies
from postkit.errors import ErrorCode, PostKitError, error_responses
from postkit.routing import PostKitRoute
from postkit.schemas.auth import TokenPair
from postkit.services import users as user_service

if TYPE_CHECKING:
    from postkit.kit import PostKit

__all__ = ["get_auth_router"]


def get_auth_router(kit: "PostKit") -> APIRouter:
    router = APIRouter(route_class=PostKitRoute, tags=["auth"])
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]

    @router.post(
        "/login",
        name=UserDependencies.LOGIN_ROUTE_NAME,
        response_model=TokenPair,
        responses=error_responses(401, 422, 429),
    )
    async def login(
        form: Annotated[OAuth2PasswordRequestForm, Depends()], session: Session
    ) -> TokenPair:
        """Exchange an email (or username) and password for an access token."""
        user = await user_service.authenticate(
            session, login=form.username, password=form.password, passwords=kit.passwords
        )
        if user is None:
            raise PostKitError(
                "Incorrect email/username or password",
                status_code=401,
                code=ErrorCode.INVALID_CREDENTIALS,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await session.commit()
        token, expires_in = kit.tokens.issue_access_token(
            user_id=user.id, session_id=None, token_version=user.token_version
        )
        await kit.hooks.notify("after_login", user=user)
        return TokenPair(access_token=token, expires_in=expires_in, refresh_token="")

    return router
