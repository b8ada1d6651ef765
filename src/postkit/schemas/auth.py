"""Token responses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["TokenPair"]


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
    refresh_token: str
