"""Mailed account routes: ``POST /password/forgot``, ``POST /password/reset``, ``POST /verify``
and ``POST /users/me/verification``. Mounted only when ``email_enabled`` is on."""

from typing import Annotated

from fastapi import APIRouter, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import Dependencies, client_address
from postkit.errors import error_responses
from postkit.models import User
from postkit.schemas.users import (
    ForgotPassword,
    Notice,
    ResetPassword,
    UserPrivate,
    VerifyEmail,
    with_password_minimum,
)
from postkit.services.account_mail import AccountMail

__all__ = ["get_account_mail_router"]

FORGOT_NOTICE = "If an account has this address, a link to reset its password is on its way."
RESET_NOTICE = "Your password was changed and every session signed out; sign in again."


def get_account_mail_router(
    account_mail: AccountMail, deps: Dependencies, *, password_min_length: int
) -> APIRouter:
    """Build the password reset and email verification routes on ``account_mail``."""
    router = deps.router(tags=["users"])
    Session = Annotated[AsyncSession, deps.session_param]
    Reset = with_password_minimum(ResetPassword, password_min_length)

    @router.post(
        "/password/forgot",
        name="postkit:forgot_password",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=Notice,
        responses={
            **error_responses(413, 422, 429),
            **deps.rate_limit_responses("account_email"),
        },
        dependencies=[deps.rate_limit("account_email")],
    )
    async def forgot_password(body: ForgotPassword, session: Session, request: Request) -> Notice:
        """Mail a password reset link to `email`, if an account has it.

        The answer is the same, and as fast, whether or not an account has the address. Too
        many requests for one address or from one client answer 429 `TOO_MANY_EMAIL_REQUESTS`.
        """
        await account_mail.forgot_password(
            session, email=str(body.email), address=client_address(request)
        )
        return Notice(detail=FORGOT_NOTICE)

    @router.post(
        "/password/reset",
        name="postkit:reset_password",
        response_model=Notice,
        responses=error_responses(400, 413, 422),
    )
    async def reset_password(body: Reset, session: Session) -> Notice:  # type: ignore[valid-type]
        """Set a new password with the `token` of a reset link; every session of the account
        ends.

        A token works once, for `password_reset_ttl`, and only while the account's password and
        email are those it was sent for: otherwise 400 `INVALID_RESET_TOKEN`, whatever the
        reason.
        """
        await account_mail.reset_password(
            session,
            token=body.token,  # type: ignore[attr-defined]
            password=body.password,  # type: ignore[attr-defined]
        )
        return Notice(detail=RESET_NOTICE)

    @router.post(
        "/verify",
        name="postkit:verify_email",
        response_model=UserPrivate,
        responses=error_responses(400, 409, 413, 422),
    )
    async def verify_email(body: VerifyEmail, session: Session) -> User:
        """Follow a verification link: the address is verified, or (a link mailed to a new
        address) the account's email becomes that address.

        A used, expired or outdated token answers 400 `INVALID_VERIFICATION_TOKEN`; a new
        address another account took meanwhile, 409 `EMAIL_TAKEN`.
        """
        return await account_mail.verify(session, token=body.token)

    @router.post(
        "/users/me/verification",
        name="postkit:resend_verification",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=Notice,
        responses={
            **error_responses(401, 429),
            **deps.rate_limit_responses("account_email"),
        },
        dependencies=[deps.rate_limit("account_email")],
    )
    async def resend_verification(
        user: Annotated[User, deps.current_user_param], session: Session, request: Request
    ) -> Notice:
        """Mail a new verification link to the account's address (nothing when it is verified
        already). Links mailed before stop working."""
        sent = await account_mail.resend_verification(
            session, user=user, address=client_address(request)
        )
        return Notice(
            detail="A verification link is on its way." if sent else "Your email is verified."
        )

    return router
