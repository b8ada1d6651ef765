"""Session list schemas: what ``GET /sessions`` shows of each login."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SessionPublic"]


class SessionPublic(BaseModel):
    """One live login of the account."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The session's id, for `DELETE /sessions/{id}`.")
    created_at: datetime = Field(description="When the login happened.")
    last_used_at: datetime | None = Field(
        description="The last login or refresh (not every request: access tokens are checked "
        "without a write)."
    )
    user_agent: str | None = Field(
        description="The `User-Agent` the login came with, cut to 255 characters."
    )
    current: bool = Field(description="Whether this is the session of the calling token.")
