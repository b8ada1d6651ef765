"""Accounts: ``POST /users`` and ``GET /users/me``."""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.errors import error_responses
from postkit.models import User
from postkit.routing import PostKitRoute
from postkit.schemas.users import UserCreate, UserPrivate
from postkit.services import users as user_service

if TYPE_CHECKING:
    from postkit.kit import PostKit

__all__ = ["get_users_router"]


def get_users_router(kit: "PostKit") -> APIRouter:
    router = APIRouter(route_class=PostKitRoute, tags=["users"])
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]
    CurrentUser = Annotated[User, Depends(kit.current_user)]

    @router.post(
        "/users",
        name="postkit:register",
        status_code=status.HTTP_201_CREATED,
        response_model=UserPrivate,
        responses=error_responses(409, 422),
    )
    async def register(body: UserCreate, session: Session) -> User:
        """Create an account."""
        return await user_service.register_user(
            session,
            email=str(body.email),
            password=body.password,
            username=body.username,
            passwords=kit.passwords,
            hooks=kit.hooks,
        )

    @router.get(
        "/users/me",
        name="postkit:me",
        response_model=UserPrivate,
        responses=error_responses(401),
    )
    async def me(user: CurrentUser) -> User:
        """The authenticated user's own account."""
        return user

    return router
