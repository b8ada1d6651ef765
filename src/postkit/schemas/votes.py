"""Vote schemas: the ``POST /vote`` body and the vote state every vote route answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

__all__ = ["Direction", "VoteIn", "VoteState"]


def _exact_direction(value: Any) -> Any:
    # Literal[0, 1] alone would take true as 1 and 1.0 as 1: a direction is written 0 or 1.
    if isinstance(value, bool | float):
        raise ValueError("must be the integer 0 or 1, written without a fraction")
    return value


Direction = Annotated[
    Literal[0, 1],
    BeforeValidator(_exact_direction),
    Field(description="1 to vote, 0 to remove your vote (the integer, written `0` or `1`)."),
]
"""A vote direction, documented as ``{"type": "integer", "enum": [0, 1]}``: ``true``, ``"1"`` and
``1.0`` are refused."""


class VoteIn(BaseModel):
    """``POST /vote``: ``dir`` 1 casts the caller's vote on ``post_id``, 0 takes it back."""

    model_config = ConfigDict(extra="forbid")

    post_id: StrictInt
    dir: Direction


class VoteState(BaseModel):
    """The caller's vote on a post after the request, and the post's new total."""

    post_id: int
    dir: Literal[0, 1] = Field(description="1 when the caller's vote stands, 0 when it does not.")
    votes: int = Field(description="The post's vote total after the request.")
