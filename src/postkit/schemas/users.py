"""Account schemas: what clients send to register or change their account, and what they see."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic.config import JsonDict

__all__ = [
    "PASSWORD_MAX_LENGTH",
    "TOKEN_MAX_LENGTH",
    "USERNAME_PATTERN",
    "Email",
    "ForgotPassword",
    "Notice",
    "ResetPassword",
    "UserCreate",
    "UserEmailUpdate",
    "UserPrivate",
    "UserPublic",
    "UserUpdate",
    "VerifyEmail",
    "with_password_minimum",
]

USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,32}$"
"""3 to 32 letters, digits or underscores; stored lower case. Never contains ``@``, so a login
name is an email exactly when it contains one."""

PASSWORD_MAX_LENGTH = 4096
"""Longer passwords are refused (422), never truncated: ``bcrypt_sha256`` hashes them whole."""

SECRET: JsonDict = {"format": "password"}
"""The JSON schema mark of a secret: Swagger UI masks it, and a 422 never echoes it."""


def _checked_email(value: str) -> str:
    try:
        # No DNS lookups; the reserved ``.test`` domain is accepted for test environments.
        checked = email_validator.validate_email(
            value.strip(), check_deliverability=False, test_environment=True
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None
    return checked.normalized.lower()


Email = Annotated[
    str,
    Field(max_length=320, json_schema_extra={"format": "email"}),
    AfterValidator(_checked_email),
]
"""An email address, checked for syntax (not deliverability) and returned lower case."""


class UserCreate(BaseModel):
    """Registration. ``username`` is optional; one is generated when absent."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    password: str = Field(min_length=8, max_length=PASSWORD_MAX_LENGTH, json_schema_extra=SECRET)
    username: str | None = Field(default=None, pattern=USERNAME_PATTERN)


class UserUpdate(BaseModel):
    """Changes to one's own account; absent fields stay as they are.

    Changing ``password`` requires ``current_password`` and ends the account's other sessions.
    """

    model_config = ConfigDict(extra="forbid")

    username: str | None = Field(default=None, pattern=USERNAME_PATTERN)
    password: str | None = Field(
        default=None, min_length=8, max_length=PASSWORD_MAX_LENGTH, json_schema_extra=SECRET
    )
    current_password: str | None = Field(
        default=None, max_length=PASSWORD_MAX_LENGTH, json_schema_extra=SECRET
    )


class UserEmailUpdate(UserUpdate):
    """:class:`UserUpdate` with ``email``, when ``email_enabled`` is on.

    Changing ``email`` requires ``current_password`` and takes effect when the link mailed to
    the new address is followed.
    """

    email: Email | None = Field(
        default=None,
        description="A new address: mailed a confirmation link, used once it is followed.",
    )


TOKEN_MAX_LENGTH = 256
"""Longer tokens cannot be postkit's (they are 43 characters): refused (422) unread."""


class ForgotPassword(BaseModel):
    """Ask for a password reset link."""

    model_config = ConfigDict(extra="forbid")

    email: Email


class ResetPassword(BaseModel):
    """Choose a new password with the token of a reset link."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=TOKEN_MAX_LENGTH)
    password: str = Field(min_length=8, max_length=PASSWORD_MAX_LENGTH)


class VerifyEmail(BaseModel):
    """Follow a verification (or email change) link: its token."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=TOKEN_MAX_LENGTH)


class Notice(BaseModel):
    """An answer with nothing to return but what happened."""

    detail: str


_Account = TypeVar("_Account", "UserCreate", "UserUpdate", "UserEmailUpdate", "ResetPassword")


def with_password_minimum(model: type[_Account], min_password_length: int) -> type[_Account]:
    """``model`` (:class:`UserCreate`, :class:`UserUpdate` or :class:`ResetPassword`) with the
    password minimum from settings, so the OpenAPI schema states the policy that is enforced."""
    field = model.model_fields["password"]
    optional = not field.is_required()
    annotation: Any = str | None if optional else str
    limits: dict[str, Any] = {
        "min_length": min_password_length,
        "max_length": PASSWORD_MAX_LENGTH,
        "json_schema_extra": SECRET,
    }
    password = Field(default=None, **limits) if optional else Field(**limits)
    derived: type[_Account] = create_model(
        model.__name__,
        __base__=model,
        __module__=__name__,
        password=(annotation, password),
    )
    return derived


class UserPublic(BaseModel):
    """What anyone may see of a user: never the email, never a hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    created_at: datetime


class UserPrivate(UserPublic):
    """What a user sees of their own account."""

    email: str
    email_verified_at: datetime | None = Field(
        default=None,
        description="When the owner verified `email` by following a mailed link; null until then.",
    )
