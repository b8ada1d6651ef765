"""Vote schemas: the ``POST /vote`` body and the vote state every vote route answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

__all__ = ["VoteIn", "VoteState"]


class VoteIn(BaseModel):
    """``POST /vote``: ``dir`` 1 casts the caller's vote on ``post_id``, 0 takes it back."""

    model_config = ConfigDict(extra="forbid")

    post_id: StrictInt
    # Strict: JSON true or 1.0 is not a direction.
    dir: StrictInt = Field(ge=0, le=1, description="1 to vote, 0 to remove your vote.")


class VoteState(BaseModel):
    """The caller's vote on a post after the request, and the post's new total."""

    post_id: int
    dir: Literal[0, 1] = Field(description="1 when the caller's vote stands, 0 when it does not.")
    votes: int = Field(description="The post's vote total after the request.")
