"""Account routes: ``POST /users``, ``GET /users/me``, ``PATCH /users/me``, ``GET /users/{id}``."""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import Authenticated, not_authenticated_error
from postkit.errors import error_responses
from postkit.models import User
from postkit.routers.auth import client_address
from postkit.routing import body_limited_route
from postkit.schemas.users import (
    UserPrivate,
    UserPublic,
    user_create_model,
    user_update_model,
)
from postkit.services import users as user_service

if TYPE_CHECKING:
    from postkit.kit import PostKit

__all__ = ["get_users_router"]

_MAX_ID = 2**31 - 1


def get_users_router(kit: "PostKit") -> APIRouter:
    """Build the account routes for ``kit``."""
    router = APIRouter(route_class=body_limited_route(kit.settings.max_body_bytes), tags=["users"])
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    OptionalUser = Annotated[User | None, Depends(kit.optional_user)]
    CurrentAuth = Annotated[Authenticated, Depends(kit.current_auth)]
    settings = kit.settings
    # The password minimum comes from settings, and so does the schema that documents it.
    Registration = user_create_model(settings.password_min_length)
    Changes = user_update_model(settings.password_min_length)
    throttle = user_service.LoginThrottle(
        max_failures=settings.login_max_failures, window=settings.login_failure_window
    )

    @router.post(
        "/users",
        name="postkit:register",
        status_code=status.HTTP_201_CREATED,
        response_model=UserPrivate,
        responses=error_responses(403, 409, 413, 422),
    )
    async def register(body: Registration, session: Session) -> User:  # type: ignore[valid-type]
        """Create an account. Without `username`, a random one is generated.

        A plugin may refuse the registration (403 or 422, with a code of its own).
        """
        return await user_service.register_user(
            session,
            email=str(body.email),  # type: ignore[attr-defined]
            password=body.password,  # type: ignore[attr-defined]
            username=body.username,  # type: ignore[attr-defined]
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

    @router.patch(
        "/users/me",
        name="postkit:update_me",
        response_model=UserPrivate,
        responses=error_responses(401, 403, 409, 413, 422, 429),
    )
    async def update_me(
        body: Changes,  # type: ignore[valid-type]
        auth: CurrentAuth,
        session: Session,
        request: Request,
    ) -> User:
        """Change the username and/or the password of the authenticated account.

        A new `password` needs `current_password` (403 `WRONG_CURRENT_PASSWORD` otherwise) and
        signs out every other session of the account; this one stays signed in.
        """
        return await user_service.change_own_account(
            session,
            user=auth.user,
            session_id=auth.claims.session_id,
            username=body.username,  # type: ignore[attr-defined]
            new_password=body.password,  # type: ignore[attr-defined]
            current_password=body.current_password,  # type: ignore[attr-defined]
            address=client_address(request),
            passwords=kit.passwords,
            throttle=throttle,
        )

    @router.get(
        "/users/{user_id}",
        name="postkit:get_user",
        response_model=UserPublic,
        responses=error_responses(401, 404, 422),
    )
    async def get_user(
        user_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
        viewer: OptionalUser,
        session: Session,
    ) -> User:
        """A user's public profile: id, username and creation time.

        Anonymous clients may read profiles when `public_reads` is on, like posts.
        """
        if viewer is None and not settings.public_reads:
            raise not_authenticated_error()
        return await user_service.get_public_user(session, user_id=user_id)

    return router
