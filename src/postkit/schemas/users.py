"""Account schemas: what clients send to register and what they see of users."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

__all__ = ["UserCreate", "UserPrivate", "UserPublic"]

USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,32}$"


class UserCreate(BaseModel):
    """Registration. ``username`` is optional; one is generated when absent."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=1, max_length=4096)
    username: str | None = Field(default=None, pattern=USERNAME_PATTERN)


class UserPublic(BaseModel):
    """What anyone may see of a user."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    created_at: datetime


class UserPrivate(UserPublic):
    """What a user sees of their own account."""

    email: str
