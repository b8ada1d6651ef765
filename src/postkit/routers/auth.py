"""Sign-in routes: `POST /login`, `/token/refresh`, `/logout` and `/logout/all`."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import LOGIN_ROUTE_NAME, Authenticated, Dependencies, client_address
from postkit.errors import error_responses
from postkit.schemas.auth import RefreshRequest, TokenPair
from postkit.schemas.users import PASSWORD_MAX_LENGTH
from postkit.services.accounts import Accounts
from postkit.services.sessions import IssuedTokens, Sessions

__all__ = ["LoginForm", "get_auth_router", "login_form"]


_Username = Annotated[
    str, Form(min_length=1, max_length=320, description="The email or the username.")
]
_Password = Annotated[
    str,
    Form(min_length=1, max_length=PASSWORD_MAX_LENGTH, json_schema_extra={"format": "password"}),
]
_GrantType = Annotated[str | None, Form(pattern="^password$")]


class LoginForm:
    """The OAuth2 password grant form (what Swagger UI's "Authorize" button sends), with the
    limits postkit enforces written into the schema. Other OAuth2 fields are ignored.

    The login route reads it through :func:`login_form`.
    """

    def __init__(
        self, username: _Username, password: _Password, grant_type: _GrantType = None
    ) -> None:
        self.username = username
        self.password = password
        self.grant_type = grant_type


async def login_form(
    username: _Username, password: _Password, grant_type: _GrantType = None
) -> LoginForm:
    """The :class:`LoginForm` dependency, awaited on the event loop.

    ``Depends(LoginForm)`` would work too, but FastAPI runs a synchronous callable (a class's
    ``__init__``) in its thread pool: one thread hop per login, and up to 40 threads (their
    stacks and malloc arenas) kept for the life of the worker after a burst of logins.
    """
    return LoginForm(username=username, password=password, grant_type=grant_type)


NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""Sent with every response carrying a token (RFC 6749 section 5.1): no cache may keep it."""

_TOKEN_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The new tokens. Never cached: `Cache-Control: no-store`.",
        "headers": {
            "Cache-Control": {
                "description": "`no-store`: no cache may keep the tokens.",
                "schema": {"type": "string", "enum": ["no-store"]},
            },
            "Pragma": {
                "description": "`no-cache`, for HTTP/1.0 caches.",
                "schema": {"type": "string", "enum": ["no-cache"]},
            },
        },
    }
}


def _token_pair(issued: IssuedTokens, response: Response) -> TokenPair:
    response.headers.update(NO_STORE_HEADERS)
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
        responses={
            **_TOKEN_RESPONSE,
            **error_responses(401, 413, 422, 429, 503),
            **deps.rate_limit_responses("login"),
        },
        dependencies=[deps.rate_limit("login")],
    )
    async def login(
        form: Annotated[LoginForm, Depends(login_form)],
        session: Session,
        request: Request,
        response: Response,
    ) -> TokenPair:
        """Exchange an email (or username) and password for an access token and a refresh token.

        Failed attempts are budgeted per account and network, per network and per account from
        unfamiliar networks (429 `TOO_MANY_ATTEMPTS` with `Retry-After`; see the authentication
        guide), and all attempts are rate limited per client address (429 `RATE_LIMITED`). An
        unknown account and a wrong password get the same answer. 503 `SERVICE_BUSY` when the
        password checks are saturated.
        """
        _, issued = await accounts.login(
            session,
            login=form.username,
            password=form.password,
            address=client_address(request),
            user_agent=request.headers.get("user-agent"),
        )
        return _token_pair(issued, response)

    @router.post(
        "/token/refresh",
        name="postkit:refresh",
        response_model=TokenPair,
        responses={
            **_TOKEN_RESPONSE,
            **error_responses(401, 413, 422),
            **deps.rate_limit_responses("token_refresh"),
        },
        dependencies=[deps.rate_limit("token_refresh")],
    )
    async def refresh(body: RefreshRequest, session: Session, response: Response) -> TokenPair:
        """Exchange a refresh token for a new access token and a new refresh token.

        Each refresh token works once. Presenting one that was already used revokes its whole
        session: every token issued from that login stops working.
        """
        _, issued = await sessions.refresh(session, refresh_token=body.refresh_token)
        return _token_pair(issued, response)

    # Both logouts answer 204, or 401 for a token that is already no good.
    logout_answers: dict[str, Any] = {
        "status_code": status.HTTP_204_NO_CONTENT,
        "responses": error_responses(401),
    }

    @router.post("/logout", name="postkit:logout", **logout_answers)
    async def logout(auth: CurrentAuth, session: Session) -> None:
        """End the current session: its refresh token and access tokens stop working."""
        await sessions.end(session, session_id=auth.claims.session_id)

    @router.post("/logout/all", name="postkit:logout_all", **logout_answers)
    async def logout_all(auth: CurrentAuth, session: Session) -> None:
        """End every session of the account: all its tokens issued so far stop working."""
        await sessions.end_all(session, user=auth.user)

    return router
