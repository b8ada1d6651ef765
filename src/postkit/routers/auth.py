"""Sign-in routes: `POST /login`, `/token/refresh`, `/logout` and `/logout/all`."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import LOGIN_ROUTE_NAME, Authenticated, Dependencies, client_address
from postkit.errors import error_responses
from postkit.schemas.auth import RefreshRequest, TokenPair
from postkit.schemas.users import PASSWORD_MAX_LENGTH
from postkit.services.accounts import Accounts
from postkit.services.sessions import IssuedTokens, Sessions

__all__ = ["LoginForm", "get_auth_router"]


class LoginForm:
    """The OAuth2 password grant form (what Swagger UI's "Authorize" button sends), with the
    limits postkit enforces written into the schema. Other OAuth2 fields are ignored."""

    def __init__(
        self,
        username: Annotated[
            str, Form(min_length=1, max_length=320, description="The email or the username.")
        ],
        password: Annotated[
            str,
            Form(
                min_length=1,
                max_length=PASSWORD_MAX_LENGTH,
                json_schema_extra={"format": "password"},
            ),
        ],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    ) -> None:
        self.username = username
        self.password = password
        self.grant_type = grant_type


def _token_pair(issued: IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
    )


def get_auth_router(accounts: Accounts, sessions: Sessions, deps: Dependencies) -> APIRouter:
    """Build the sign-in routes on ``accounts`` and ``sessions``."""
    router = deps.router(tags=["auth"])
    Session = Annotated[AsyncSession, deps.session_param]
    CurrentAuth = Annotated[Authenticated, deps.current_auth_param]

    @router.post(
        "/login",
        name=LOGIN_ROUTE_NAME,
        response_model=TokenPair,
        responses=error_responses(401, 413, 422, 429),
    )
    async def login(
        form: Annotated[LoginForm, Depends()], session: Session, request: Request
    ) -> TokenPair:
        """Exchange an email (or username) and password for an access token and a refresh token.

        Failed attempts are limited per account identifier and per client address (429 with
        `Retry-After`). An unknown account and a wrong password get the same answer.
        """
        _, issued = await accounts.login(
            session,
            login=form.username,
            password=form.password,
            address=client_address(request),
            user_agent=request.headers.get("user-agent"),
        )
        return _token_pair(issued)

    @router.post(
        "/token/refresh",
        name="postkit:refresh",
        response_model=TokenPair,
        responses=error_responses(401, 413, 422),
    )
    async def refresh(body: RefreshRequest, session: Session) -> TokenPair:
        """Exchange a refresh token for a new access token and a new refresh token.

        Each refresh token works once. Presenting one that was already used revokes its whole
        session: every token issued from that login stops working.
        """
        _, issued = await sessions.refresh(session, refresh_token=body.refresh_token)
        return _token_pair(issued)

    @router.post(
        "/logout",
        name="postkit:logout",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401),
    )
    async def logout(auth: CurrentAuth, session: Session) -> None:
        """End the current session: its refresh token and access tokens stop working."""
        await sessions.end(session, session_id=auth.claims.session_id)

    @router.post(
        "/logout/all",
        name="postkit:logout_all",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401),
    )
    async def logout_all(auth: CurrentAuth, session: Session) -> None:
        """End every session of the account: all its tokens issued so far stop working."""
        await sessions.end_all(session, user=auth.user)

    return router
