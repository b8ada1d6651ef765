"""Account routes: ``POST /users``, ``GET /users/me``, ``PATCH /users/me``,
``DELETE /users/me``, ``GET /users/me/export``, ``GET /users/{id}``."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import Authenticated, Dependencies, changes_password, client_address
from postkit.errors import error_responses
from postkit.models import User
from postkit.routers.common import ItemId
from postkit.schemas.accounts import AccountDelete, AccountExport
from postkit.schemas.users import (
    UserCreate,
    UserEmailUpdate,
    UserPrivate,
    UserPublic,
    UserUpdate,
    with_password_minimum,
)
from postkit.services.accounts import Accounts

__all__ = ["get_users_router"]


def get_users_router(
    accounts: Accounts,
    deps: Dependencies,
    *,
    password_min_length: int,
    email_changes: bool = False,
) -> APIRouter:
    """Build the account routes on ``accounts``; the schemas state ``password_min_length``.
    With ``email_changes`` (``email_enabled``), ``PATCH /users/me`` accepts a new ``email``."""
    router = deps.router(tags=["users"])
    Session = Annotated[AsyncSession, deps.session_param]
    # The password minimum comes from settings, and so does the schema that documents it.
    Registration = with_password_minimum(UserCreate, password_min_length)
    Changes = with_password_minimum(
        UserEmailUpdate if email_changes else UserUpdate, password_min_length
    )

    @router.post(
        "/users",
        name="postkit:register",
        status_code=status.HTTP_201_CREATED,
        response_model=UserPrivate,
        responses={
            **error_responses(403, 409, 413, 422, 503),
            **deps.rate_limit_responses("register"),
        },
        dependencies=[deps.rate_limit("register")],
    )
    async def register(body: Registration, session: Session) -> User:  # type: ignore[valid-type]
        """Create an account. Without `username`, a random one is generated.

        A plugin may refuse the registration (403 or 422, with a code of its own).
        """
        return await accounts.register(
            session,
            email=str(body.email),  # type: ignore[attr-defined]
            password=body.password,  # type: ignore[attr-defined]
            username=body.username,  # type: ignore[attr-defined]
        )

    @router.get(
        "/users/me",
        name="postkit:me",
        response_model=UserPrivate,
        responses=error_responses(401),
    )
    async def me(user: Annotated[User, deps.current_user_param], response: Response) -> User:
        """The authenticated user's own account (`Cache-Control: no-store`: it holds the
        email)."""
        response.headers["Cache-Control"] = "no-store"
        return user

    @router.patch(
        "/users/me",
        name="postkit:update_me",
        response_model=UserPrivate,
        responses={
            **error_responses(401, 403, 409, 413, 422, 429, 503),
            **deps.rate_limit_responses("password_change"),
        },
        dependencies=[deps.rate_limit("password_change", when=changes_password)],
    )
    async def update_me(
        body: Changes,  # type: ignore[valid-type]
        auth: Annotated[Authenticated, deps.current_auth_param],
        session: Session,
        request: Request,
    ) -> User:
        """Change the username, the password and/or the email of the authenticated account.

        A new `password` needs `current_password` (403 `WRONG_CURRENT_PASSWORD` otherwise) and
        signs out every other session of the account; this one stays signed in. Password
        changes are rate limited per account (429 `RATE_LIMITED`).

        A new `email` needs `current_password` too, and changes nothing yet: a link is mailed to
        the new address and the change happens when it is followed (`POST /verify`); the
        current address is told. An address another account has or waits for answers 409
        `EMAIL_TAKEN`. Only when the service sends mail (`email_enabled`).
        """
        return await accounts.update(
            session,
            auth=auth,
            address=client_address(request),
            username=body.username,  # type: ignore[attr-defined]
            new_password=body.password,  # type: ignore[attr-defined]
            current_password=body.current_password,  # type: ignore[attr-defined]
            email=getattr(body, "email", None),
        )

    @router.delete(
        "/users/me",
        name="postkit:delete_me",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401, 403, 409, 413, 422, 429),
    )
    async def delete_me(
        body: AccountDelete,
        auth: Annotated[Authenticated, deps.current_auth_param],
        session: Session,
        request: Request,
    ) -> None:
        """Delete the authenticated account, given its password in `current_password`.

        Its votes are withdrawn (other posts' totals stay exact), its posts are deleted or
        anonymised (setting `account_deletion_posts`), and every session and token of it ends.
        A wrong password answers 403 `WRONG_CURRENT_PASSWORD`, under the login throttle (429).
        A plugin may refuse the deletion (403 or 409, with a code of its own).
        """
        await accounts.delete(
            session,
            user=auth.user,
            current_password=body.current_password,
            address=client_address(request),
        )

    @router.get(
        "/users/me/export",
        name="postkit:export_me",
        response_class=StreamingResponse,
        responses={
            200: {
                "model": AccountExport,
                "description": "The account's data, as a JSON attachment",
                "content": {"application/json": {}},
            },
            **error_responses(401),
        },
    )
    async def export_me(
        user: Annotated[User, deps.current_user_param],
        # Request-scoped (not the routes' usual function scope): it stays open while the
        # document streams, after this function has returned.
        stream_session: Annotated[AsyncSession, Depends(deps.session)],
    ) -> StreamingResponse:
        """The authenticated account's profile, posts (drafts included) and votes, as one JSON
        document, sent as a file download (`Content-Disposition: attachment`)."""
        return StreamingResponse(
            accounts.export(stream_session, user=user),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="account-{user.id}-export.json"',
                "Cache-Control": "no-store",
            },
        )

    @router.get(
        "/users/{user_id}",
        name="postkit:get_user",
        response_model=UserPublic,
        responses=error_responses(401, 404, 422),
    )
    async def get_user(
        user_id: ItemId, _reader: Annotated[User | None, deps.reader_param], session: Session
    ) -> User:
        """A user's public profile: id, username and creation time.

        Anonymous clients may read profiles when `public_reads` is on, like posts.
        """
        return await accounts.get_public(session, user_id=user_id)

    return router
