"""Token requests and responses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RefreshRequest", "TokenPair"]


class TokenPair(BaseModel):
    """What a login or a refresh answers: a short-lived access token and a refresh token."""

    access_token: str = Field(description="Send as `Authorization: Bearer <access_token>`.")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(
        description="Single use: exchange it at `/token/refresh` for a new pair."
    )


class RefreshRequest(BaseModel):
    """The body of ``POST /token/refresh``."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=512)
