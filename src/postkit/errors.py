"""postkit's errors: one body shape, ``{"detail": ..., "code": ...}``, with stable codes.

Every error a client can cause is a named subclass of :class:`PostKitError` defined here, once,
with its status, its :class:`ErrorCode` and its message. Services raise them; hosts catch them
by type (``except PostNotFound``) and integrators branch on the code, never on the English
``detail``. ``docs/errors.md`` lists them, generated from this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, ClassVar

from pydantic import BaseModel
from starlette.exceptions import HTTPException

__all__ = [
    "AccountInUse",
    "AlreadyVoted",
    "AuthenticationError",
    "BodyTooLarge",
    "DatabaseUnavailable",
    "EmailTaken",
    "ErrorBody",
    "ErrorCode",
    "InvalidCredentials",
    "InvalidCursor",
    "InvalidRefreshToken",
    "InvalidToken",
    "NotAuthenticated",
    "NotPostOwner",
    "PostKitError",
    "PostNotFound",
    "PostRejected",
    "SessionNotFound",
    "TooManyAttempts",
    "UserNotFound",
    "UsernameTaken",
    "ValidationErrorBody",
    "VoteNotFound",
    "VoteRejected",
    "WrongCurrentPassword",
    "error_classes",
    "error_responses",
]


class ErrorCode(str, Enum):
    """Machine-readable error codes. Values never change once released."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    # Accounts and authentication
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    INVALID_TOKEN = "INVALID_TOKEN"
    INVALID_REFRESH_TOKEN = "INVALID_REFRESH_TOKEN"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    USERNAME_TAKEN = "USERNAME_TAKEN"
    WRONG_CURRENT_PASSWORD = "WRONG_CURRENT_PASSWORD"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    ACCOUNT_IN_USE = "ACCOUNT_IN_USE"
    # Posts and votes
    POST_NOT_FOUND = "POST_NOT_FOUND"
    NOT_POST_OWNER = "NOT_POST_OWNER"
    POST_REJECTED = "POST_REJECTED"
    INVALID_CURSOR = "INVALID_CURSOR"
    ALREADY_VOTED = "ALREADY_VOTED"
    VOTE_NOT_FOUND = "VOTE_NOT_FOUND"
    VOTE_REJECTED = "VOTE_REJECTED"


class ErrorBody(BaseModel):
    """The body of every error postkit answers with."""

    detail: str
    code: str


class ValidationErrorBody(BaseModel):
    """The body of a 422: ``detail`` lists the fields at fault (or says what a plugin refused)."""

    detail: str | list[dict[str, Any]]
    code: str


class PostKitError(HTTPException):
    """An error a client caused, answered with ``status_code`` and an :class:`ErrorBody`.

    Each subclass fixes its ``status_code``, ``code`` and default ``message``, so raising one
    takes no arguments (``raise PostNotFound()``). Plugins and hosts may still build one ad hoc
    for a rule of their own: ``PostKitError("No bots", status_code=403, code="NO_BOTS")``.

    It is also a Starlette :class:`~starlette.exceptions.HTTPException`, so raised on a host's
    own route (by ``kit.current_user`` or ``kit.posts.find``, say) FastAPI's default handler
    answers it with the same status and headers instead of a 500, with no handler to install
    (``kit.install_error_handlers(app)`` makes the body ``{"detail", "code"}`` there too).
    """

    status_code: int = 400
    code: str = ErrorCode.VALIDATION_ERROR.value
    message: ClassVar[str] = "Bad request"
    """The ``detail`` when none is given."""
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        detail: str | None = None,
        *,
        status_code: int | None = None,
        code: str | ErrorCode | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        text = detail if detail is not None else type(self).message
        merged = {**type(self).default_headers, **(headers or {})}
        super().__init__(
            status_code=status_code if status_code is not None else type(self).status_code,
            detail=text,
            headers=merged,
        )
        self.detail: str = text
        self.headers: dict[str, str] = merged
        if code is not None:
            self.code = code.value if isinstance(code, ErrorCode) else code

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": self.code}


# --- Requests and the service -------------------------------------------------------------------


class BodyTooLarge(PostKitError):
    """The request body is over ``max_body_bytes`` (declared or streamed)."""

    status_code = 413
    code = ErrorCode.BODY_TOO_LARGE.value
    message = "The request body is too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes")
        self.limit = limit


class DatabaseUnavailable(PostKitError):
    """The database could not be reached, or stopped answering; the client may retry."""

    status_code = 503
    code = ErrorCode.DATABASE_UNAVAILABLE.value
    message = "The database is unavailable; try again shortly."
    default_headers = {"Retry-After": "5"}


# --- Accounts and authentication ----------------------------------------------------------------

BEARER_CHALLENGE: Mapping[str, str] = {"WWW-Authenticate": "Bearer"}


class AuthenticationError(PostKitError):
    """A 401 with the ``WWW-Authenticate: Bearer`` challenge."""

    status_code = 401
    code = ErrorCode.NOT_AUTHENTICATED.value
    message = "Not authenticated"
    default_headers = BEARER_CHALLENGE


class NotAuthenticated(AuthenticationError):
    """The request carries no bearer token, on a route that needs one."""

    code = ErrorCode.NOT_AUTHENTICATED.value
    message = "Not authenticated"


class InvalidToken(AuthenticationError):
    """The one answer for every reason an access token fails: expired, tampered, wrong key,
    revoked session, unknown or inactive user. Clients cannot tell the reasons apart, on
    purpose."""

    code = ErrorCode.INVALID_TOKEN.value
    message = "Invalid or expired token"


class InvalidCredentials(AuthenticationError):
    """The one answer for a refused login, whether the account is unknown, inactive, or the
    password wrong."""

    code = ErrorCode.INVALID_CREDENTIALS.value
    message = "Incorrect email/username or password"


class InvalidRefreshToken(PostKitError):
    """A refresh token that is unknown, expired, already spent, or of a revoked session."""

    status_code = 401
    code = ErrorCode.INVALID_REFRESH_TOKEN.value
    message = "Invalid or expired refresh token"


class TooManyAttempts(PostKitError):
    """Too many failed login (or current-password) attempts; ``Retry-After`` says when to retry."""

    status_code = 429
    code = ErrorCode.TOO_MANY_ATTEMPTS.value
    message = "Too many failed login attempts; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class EmailTaken(PostKitError):
    """Registration with an email address another account has."""

    status_code = 409
    code = ErrorCode.EMAIL_TAKEN.value
    message = "An account with this email already exists"


class UsernameTaken(PostKitError):
    """Registration, or a change of username, to a username another account has."""

    status_code = 409
    code = ErrorCode.USERNAME_TAKEN.value
    message = "This username is taken"


class WrongCurrentPassword(PostKitError):
    """A change that needs the current password came without it, or with a wrong one."""

    status_code = 403
    code = ErrorCode.WRONG_CURRENT_PASSWORD.value
    message = "The current password is wrong"


class UserNotFound(PostKitError):
    """No active account has this id."""

    status_code = 404
    code = ErrorCode.USER_NOT_FOUND.value
    message = "User not found"


class SessionNotFound(PostKitError):
    """``DELETE /sessions/{id}`` for a session that is not a live one of the caller's: unknown,
    already ended, or another account's (which is never revealed)."""

    status_code = 404
    code = ErrorCode.SESSION_NOT_FOUND.value
    message = "Session not found"


class AccountInUse(PostKitError):
    """Deleting an account that rows of the host still point at (a foreign key without
    ``ON DELETE CASCADE``); the host removes them in ``before_account_delete``."""

    status_code = 409
    code = ErrorCode.ACCOUNT_IN_USE.value
    message = "The account is still referenced by other records and cannot be deleted"


# --- Posts and votes ----------------------------------------------------------------------------


class PostNotFound(PostKitError):
    """The post does not exist, or the caller may not see it (another user's draft, a post a
    plugin's read filter hides)."""

    status_code = 404
    code = ErrorCode.POST_NOT_FOUND.value
    message = "Post not found"


class NotPostOwner(PostKitError):
    """The caller may see the post but not change it (``can_modify_post`` said no)."""

    status_code = 403
    code = ErrorCode.NOT_POST_OWNER.value
    message = "Only the post's owner may change it"

    def __init__(self, action: str | None = None) -> None:
        super().__init__(f"Only the post's owner may {action} it" if action else None)


class PostRejected(PostKitError):
    """Raised by a ``validate_post`` plugin to refuse a post (422 unless ``status_code=403``)."""

    status_code = 422
    code = ErrorCode.POST_REJECTED.value
    message = "The post was refused"


class InvalidCursor(PostKitError):
    """A ``cursor`` that postkit did not issue, or issued for another sort order."""

    status_code = 400
    code = ErrorCode.INVALID_CURSOR.value
    message = "Invalid cursor"

    def __init__(self, why: str | None = None) -> None:
        super().__init__(f"Invalid cursor: {why}" if why else None)


class AlreadyVoted(PostKitError):
    """``POST /vote`` with ``dir`` 1 on a post the caller has voted on."""

    status_code = 409
    code = ErrorCode.ALREADY_VOTED.value
    message = "You have already voted on this post"


class VoteNotFound(PostKitError):
    """``POST /vote`` with ``dir`` 0 on a post the caller has not voted on."""

    status_code = 404
    code = ErrorCode.VOTE_NOT_FOUND.value
    message = "You have not voted on this post"


class VoteRejected(PostKitError):
    """Raised by a ``validate_vote`` plugin to refuse a vote (422 unless ``status_code=403``)."""

    status_code = 422
    code = ErrorCode.VOTE_REJECTED.value
    message = "The vote was refused"


def error_classes() -> list[type[PostKitError]]:
    """Every concrete error postkit raises, by status then code (the docs' table of errors is
    generated from it)."""
    found: list[type[PostKitError]] = []
    pending: list[type[PostKitError]] = [PostKitError]
    while pending:
        for subclass in pending.pop(0).__subclasses__():
            if subclass.__module__ == __name__ and subclass not in found:
                found.append(subclass)
                pending.append(subclass)
    concrete = [cls for cls in found if cls is not AuthenticationError]
    return sorted(concrete, key=lambda cls: (cls.status_code, cls.code))


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting postkit's error body for ``statuses``."""
    descriptions = {
        400: "Bad request",
        401: "Missing, invalid or expired credentials",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict with the current state",
        413: "Request body too large",
        422: "Invalid input",
        429: "Too many attempts",
        503: "Database unavailable",
    }
    return {
        status: {
            "model": ValidationErrorBody if status == 422 else ErrorBody,
            "description": descriptions.get(status, "Error"),
        }
        for status in statuses
    }
