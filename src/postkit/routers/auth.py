"""Sign-in routes: `POST /login`, `/token/refresh`, `/logout` and `/logout/all`."""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import Authenticated, UserDependencies
from postkit.errors import error_responses
from postkit.routing import body_limited_route
from postkit.schemas.auth import RefreshRequest, TokenPair
from postkit.schemas.users import PASSWORD_MAX_LENGTH
from postkit.services import auth as auth_service

if TYPE_CHECKING:
    from postkit.kit import PostKit

__all__ = ["LoginForm", "client_address", "get_auth_router"]


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


def client_address(request: Request) -> str:
    """The address login throttling counts against: the peer of the connection.

    Behind a reverse proxy this is the proxy unless the server trusts its forwarding headers
    (uvicorn ``--proxy-headers --forwarded-allow-ips``, gunicorn ``forwarded_allow_ips``).
    """
    return request.client.host if request.client else "unknown"


def _token_pair(issued: auth_service.IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
    )


def get_auth_router(kit: "PostKit") -> APIRouter:
    """Build the sign-in routes for ``kit``."""
    router = APIRouter(route_class=body_limited_route(kit.settings.max_body_bytes), tags=["auth"])
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]
    # current_user's building block: the user together with the token's auth session id.
    CurrentAuth = Annotated[Authenticated, Depends(kit.current_auth)]
    settings = kit.settings
    throttle = auth_service.LoginThrottle(
        max_failures=settings.login_max_failures, window=settings.login_failure_window
    )

    @router.post(
        "/login",
        name=UserDependencies.LOGIN_ROUTE_NAME,
        response_model=TokenPair,
        responses=error_responses(401, 413, 422, 429),
    )
    async def login(
        form: Annotated[LoginForm, Depends()],
        session: Session,
        request: Request,
    ) -> TokenPair:
        """Exchange an email (or username) and password for an access token and a refresh token.

        Failed attempts are limited per account identifier and per client address (429 with
        `Retry-After`). An unknown account and a wrong password get the same answer.
        """
        _, issued = await auth_service.password_login(
            session,
            login=form.username,
            password=form.password,
            address=client_address(request),
            passwords=kit.passwords,
            tokens=kit.tokens,
            throttle=throttle,
            refresh_ttl=settings.refresh_token_ttl,
            hooks=kit.hooks,
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
        _, issued = await auth_service.refresh_session(
            session,
            refresh_token=body.refresh_token,
            tokens=kit.tokens,
            refresh_ttl=settings.refresh_token_ttl,
        )
        return _token_pair(issued)

    @router.post(
        "/logout",
        name="postkit:logout",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401),
    )
    async def logout(auth: CurrentAuth, session: Session) -> None:
        """End the current session: its refresh token and access tokens stop working."""
        await auth_service.end_session(session, session_id=auth.claims.session_id)

    @router.post(
        "/logout/all",
        name="postkit:logout_all",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401),
    )
    async def logout_all(auth: CurrentAuth, session: Session) -> None:
        """End every session of the account: all its tokens issued so far stop working."""
        await auth_service.end_all_sessions(session, user=auth.user)

    return router
