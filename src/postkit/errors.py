"""postkit's errors: one body shape, ``{"detail": ..., "code": ...}``, with stable codes.

Integrators branch on :class:`ErrorCode` values, never on the English ``detail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import BaseModel
from starlette.exceptions import HTTPException

__all__ = [
    "ErrorBody",
    "ErrorCode",
    "PostKitError",
    "PostRejected",
    "ValidationErrorBody",
    "VoteRejected",
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

    On postkit's routes the body is ``{"detail", "code"}``. It is also a Starlette
    :class:`~starlette.exceptions.HTTPException`, so raised on a host's own route (by
    ``kit.current_user`` or ``kit.find_post``, say) FastAPI's default handler answers it with the
    same status and headers, and ``{"detail"}``, instead of a 500, with no handler to install.
    """

    status_code: int = 400
    code: str = ErrorCode.VALIDATION_ERROR.value

    def __init__(
        self,
        detail: str,
        *,
        status_code: int | None = None,
        code: str | ErrorCode | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            status_code=status_code if status_code is not None else type(self).status_code,
            detail=detail,
            headers=dict(headers or {}),
        )
        self.detail: str = detail
        self.headers: dict[str, str] = dict(headers or {})
        if code is not None:
            self.code = code.value if isinstance(code, ErrorCode) else code

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": self.code}


class PostRejected(PostKitError):
    """Raised by a ``validate_post`` plugin to refuse a post (422 unless ``status_code=403``)."""

    status_code = 422
    code = ErrorCode.POST_REJECTED.value


class VoteRejected(PostKitError):
    """Raised by a ``validate_vote`` plugin to refuse a vote (422 unless ``status_code=403``)."""

    status_code = 422
    code = ErrorCode.VOTE_REJECTED.value


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
