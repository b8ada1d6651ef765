"""Account lifecycle schemas: deleting an account, and the document an export answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from postkit.schemas.users import PASSWORD_MAX_LENGTH, UserPrivate

__all__ = ["AccountDelete", "AccountExport", "ExportedPost", "ExportedVote"]


class AccountDelete(BaseModel):
    """The body of ``DELETE /users/me``: the password, so a stolen access token cannot delete
    the account."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)


class ExportedPost(BaseModel):
    """One of the account's posts, drafts included."""

    id: int
    title: str
    content: str
    published: bool
    created_at: datetime
    updated_at: datetime
    votes: int = Field(description="The post's vote total.")


class ExportedVote(BaseModel):
    """A vote the account cast."""

    post_id: int
    weight: int
    created_at: datetime


class AccountExport(BaseModel):
    """Everything postkit holds about an account, as ``GET /users/me/export`` answers it."""

    format_version: Literal[1] = Field(description="Changes when the document's shape does.")
    exported_at: datetime
    profile: UserPrivate
    posts: list[ExportedPost] = Field(description="Oldest first.")
    votes: list[ExportedVote] = Field(description="By post id.")
