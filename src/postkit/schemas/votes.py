"""Vote schemas: the ``POST /vote`` body and the vote state every vote route answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

__all__ = ["Direction", "VoteIn", "VoteState", "VoteValue"]


def _exact_direction(value: Any) -> Any:
    # Literal[...] alone would take true as 1 and 1.0 as 1: a direction is written as an integer.
    if isinstance(value, bool | float):
        raise ValueError("must be the integer 1, -1 or 0, written without a fraction")
    return value


Direction = Annotated[
    Literal[1, -1, 0],
    BeforeValidator(_exact_direction),
    Field(
        description=(
            "1 to up-vote, -1 to down-vote (422 `DOWNVOTES_DISABLED` when the `allow_downvotes`"
            " setting is off), 0 to remove your vote; written as the integer."
        )
    ),
]
"""A vote direction, documented as ``{"type": "integer", "enum": [1, -1, 0]}``: ``true``,
``"1"`` and ``1.0`` are refused."""

CastDirection = Annotated[
    Literal[1, -1],
    BeforeValidator(_exact_direction),
    Field(
        description=(
            "1 to up-vote, -1 to down-vote (422 `DOWNVOTES_DISABLED` when the `allow_downvotes`"
            " setting is off); written as the integer."
        )
    ),
]


class VoteIn(BaseModel):
    """``POST /vote``: ``dir`` 1 or -1 casts (or switches) the caller's vote on ``post_id``, 0
    takes it back."""

    model_config = ConfigDict(extra="forbid")

    post_id: StrictInt
    dir: Direction


class VoteValue(BaseModel):
    """``PUT /posts/{id}/vote``'s optional body: the vote's direction (1 when there is no
    body)."""

    model_config = ConfigDict(extra="forbid")

    dir: CastDirection = 1


class VoteState(BaseModel):
    """The caller's vote on a post after the request, and the post's new counters."""

    post_id: int
    dir: Literal[1, -1, 0] = Field(
        description="The caller's vote after the request: 1 up, -1 down, 0 none."
    )
    score: int = Field(description="The post's score after the request.")
    upvotes: int = Field(description="The post's number of up-votes after the request.")
    downvotes: int = Field(description="The post's number of down-votes after the request.")
    votes: int = Field(
        deprecated=True,
        description="Deprecated alias of `score` (removed in the next release).",
    )
