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
    "CommentNotFound",
    "CommentRejected",
    "CommentTooDeep",
    "DatabaseUnavailable",
    "DownvotesDisabled",
    "EmailChangeUnavailable",
    "EmailNotVerified",
    "EmailTaken",
    "ErrorBody",
    "ErrorCode",
    "InvalidCredentials",
    "InvalidCursor",
    "InvalidParent",
    "InvalidRefreshToken",
    "InvalidResetToken",
    "InvalidToken",
    "InvalidVerificationToken",
    "NotAuthenticated",
    "NotCommentAuthor",
    "NotPostOwner",
    "ParentDeleted",
    "PostKitError",
    "PostNotFound",
    "PostRejected",
    "RateLimitUnavailable",
    "RateLimited",
    "ServiceBusy",
    "SessionNotFound",
    "TooManyAttempts",
    "TooManyEmailRequests",
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
    SERVICE_BUSY = "SERVICE_BUSY"
    RATE_LIMITED = "RATE_LIMITED"
    RATE_LIMIT_UNAVAILABLE = "RATE_LIMIT_UNAVAILABLE"
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
    # Account mail: password reset, email verification, email change
    INVALID_RESET_TOKEN = "INVALID_RESET_TOKEN"
    INVALID_VERIFICATION_TOKEN = "INVALID_VERIFICATION_TOKEN"
    EMAIL_NOT_VERIFIED = "EMAIL_NOT_VERIFIED"
    EMAIL_CHANGE_UNAVAILABLE = "EMAIL_CHANGE_UNAVAILABLE"
    TOO_MANY_EMAIL_REQUESTS = "TOO_MANY_EMAIL_REQUESTS"
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
    DOWNVOTES_DISABLED = "DOWNVOTES_DISABLED"
    # Comments
    COMMENT_NOT_FOUND = "COMMENT_NOT_FOUND"
    NOT_COMMENT_AUTHOR = "NOT_COMMENT_AUTHOR"
    COMMENT_REJECTED = "COMMENT_REJECTED"
    COMMENT_TOO_DEEP = "COMMENT_TOO_DEEP"
    INVALID_PARENT = "INVALID_PARENT"
    PARENT_DELETED = "PARENT_DELETED"


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


class ServiceBusy(PostKitError):
    """Too much work is queued (password hashing, or logins waiting for one another); the
    client may retry after ``Retry-After`` seconds."""

    status_code = 503
    code = ErrorCode.SERVICE_BUSY.value
    message = "The server is busy; try again shortly."

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class RateLimited(PostKitError):
    """A rate limit is used up (too many registrations, votes, searches, ... in its window).

    ``Retry-After`` says when to retry; the ``RateLimit`` and ``RateLimit-Policy`` fields name
    the limit and what is left of it (see ``docs/rate-limits.md``).
    """

    status_code = 429
    code = ErrorCode.RATE_LIMITED.value
    message = "Too many requests; try again later"

    def __init__(
        self, limit: str, *, retry_after: int, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(
            f"Too many requests ({limit}); try again in {retry_after} seconds",
            headers={**(headers or {}), "Retry-After": str(retry_after)},
        )
        self.limit = limit
        self.retry_after = retry_after


class RateLimitUnavailable(PostKitError):
    """The rate limit store (Redis) does not answer and ``rate_limit_fail_open`` is off, so a
    rate-limited request is refused rather than let through uncounted."""

    status_code = 503
    code = ErrorCode.RATE_LIMIT_UNAVAILABLE.value
    message = "Rate limiting is unavailable; try again shortly."
    default_headers = {"Retry-After": "1"}


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


# --- Account mail -------------------------------------------------------------------------------


class InvalidResetToken(PostKitError):
    """The one answer for every refused password reset token: unknown (forged or mistyped),
    already used, expired, or outdated because the account's password or email changed since it
    was sent. Clients cannot tell the reasons apart, on purpose: the remedy is the same (ask for
    a new link)."""

    status_code = 400
    code = ErrorCode.INVALID_RESET_TOKEN.value
    message = "This password reset link is invalid or has expired; ask for a new one"


class InvalidVerificationToken(PostKitError):
    """The one answer for every refused email verification (or email change) token: unknown,
    already used, expired, or outdated because the account's email (or, for a change, its
    password) changed since it was sent."""

    status_code = 400
    code = ErrorCode.INVALID_VERIFICATION_TOKEN.value
    message = "This verification link is invalid or has expired; ask for a new one"


class EmailNotVerified(PostKitError):
    """The route needs a verified email address (``kit.verified_user``, and postkit's own write
    routes when ``require_verified_email`` is on) and the account has not verified its own."""

    status_code = 403
    code = ErrorCode.EMAIL_NOT_VERIFIED.value
    message = "Verify your email address first"


class EmailChangeUnavailable(PostKitError):
    """``kit.accounts.update(email=...)`` while ``email_enabled`` is off: the new address must
    confirm the change by mail, and this kit sends none. (Over HTTP, ``PATCH /users/me`` then
    has no ``email`` field: 422.)"""

    status_code = 400
    code = ErrorCode.EMAIL_CHANGE_UNAVAILABLE.value
    message = "Changing the email address is not available: this service sends no mail"


class TooManyEmailRequests(PostKitError):
    """Too many mails asked for (password reset or verification) for one address, account or
    client in the window; ``Retry-After`` says when to retry."""

    status_code = 429
    code = ErrorCode.TOO_MANY_EMAIL_REQUESTS.value
    message = "Too many emails requested; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


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


class DownvotesDisabled(PostKitError):
    """A down-vote (``dir`` -1) while the ``allow_downvotes`` setting is off."""

    status_code = 422
    code = ErrorCode.DOWNVOTES_DISABLED.value
    message = "Down-votes are turned off here: vote with dir 1, or remove your vote with dir 0"


# --- Comments -----------------------------------------------------------------------------------


class CommentNotFound(PostKitError):
    """The comment does not exist, or the caller may not see it (its post is hidden from them,
    or a plugin's ``comment_query_filters`` hides it). A deleted comment still in a thread is
    shown (``deleted: true``) but cannot be changed, voted on or deleted again: 404 too."""

    status_code = 404
    code = ErrorCode.COMMENT_NOT_FOUND.value
    message = "Comment not found"


class NotCommentAuthor(PostKitError):
    """The caller may see the comment but not change it (``can_modify_comment`` said no)."""

    status_code = 403
    code = ErrorCode.NOT_COMMENT_AUTHOR.value
    message = "Only the comment's author may change it"

    def __init__(self, action: str | None = None) -> None:
        super().__init__(f"Only the comment's author may {action} it" if action else None)


class CommentRejected(PostKitError):
    """Raised by a ``validate_comment`` plugin to refuse a comment (422 unless
    ``status_code=403``)."""

    status_code = 422
    code = ErrorCode.COMMENT_REJECTED.value
    message = "The comment was refused"


class CommentTooDeep(PostKitError):
    """A reply deeper than the ``comment_max_depth`` setting allows."""

    status_code = 422
    code = ErrorCode.COMMENT_TOO_DEEP.value
    message = "This thread is too deep for another reply"

    def __init__(self, max_depth: int | None = None) -> None:
        super().__init__(
            f"Replies may nest at most {max_depth} levels deep; reply higher up the thread"
            if max_depth is not None
            else None
        )
        self.max_depth = max_depth


class InvalidParent(PostKitError):
    """``parent_id`` names no comment of this post that the caller can see."""

    status_code = 422
    code = ErrorCode.INVALID_PARENT.value
    message = "parent_id names no comment of this post"


class ParentDeleted(PostKitError):
    """A reply to a comment that was deleted (before or while the reply was written)."""

    status_code = 409
    code = ErrorCode.PARENT_DELETED.value
    message = "The comment you reply to was deleted"


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
        503: "Unavailable for now (the database is unreachable, or the server is busy): retry "
        "after `Retry-After`",
    }
    return {
        status: {
            "model": ValidationErrorBody if status == 422 else ErrorBody,
            "description": descriptions.get(status, "Error"),
        }
        for status in statuses
    }
