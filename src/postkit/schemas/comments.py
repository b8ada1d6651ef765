"""Comment schemas: what clients send to write a comment or vote on one, and what they read.

Request bodies forbid unknown fields: the author always comes from the token. The longest
body is the kit's ``comment_content_max_length`` setting, checked by the router.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from postkit.schemas.posts import storable_text

__all__ = [
    "CommentAuthor",
    "CommentBody",
    "CommentCreate",
    "CommentPatch",
    "CommentPublic",
    "CommentRevisionPublic",
    "CommentVoteIn",
    "CommentVoteState",
]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain more than whitespace")
    return storable_text(value)


CommentBody = Annotated[
    str,
    Field(min_length=1, description="The comment's text (kept as written; blank is refused)."),
    AfterValidator(_not_blank),
]


class CommentCreate(BaseModel):
    """``POST /posts/{id}/comments``: a top-level comment, or a reply to ``parent_id``."""

    model_config = ConfigDict(extra="forbid")

    body: CommentBody
    parent_id: StrictInt | None = Field(
        default=None,
        description=(
            "The comment replied to, on the same post (422 `INVALID_PARENT` otherwise; 409 "
            "`PARENT_DELETED` if it was deleted). Leave out for a top-level comment."
        ),
    )


class CommentPatch(BaseModel):
    """``PATCH /comments/{id}``: the new body (the previous one goes to the revisions)."""

    model_config = ConfigDict(extra="forbid")

    body: CommentBody


def _exact_direction(value: Any) -> Any:
    if isinstance(value, bool | float):
        raise ValueError("must be the integer 1 or -1, written without a fraction")
    return value


class CommentVoteIn(BaseModel):
    """``PUT /comments/{id}/vote``: ``dir`` 1 up-votes (the default), -1 down-votes."""

    model_config = ConfigDict(extra="forbid")

    dir: Annotated[
        Literal[1, -1],
        BeforeValidator(_exact_direction),
        Field(description="1 up, -1 down (422 `DOWNVOTES_DISABLED` when they are off)."),
    ] = 1


class CommentVoteState(BaseModel):
    """The caller's vote on a comment after the request, and the comment's new counts."""

    comment_id: int
    dir: Literal[-1, 0, 1] = Field(description="The caller's standing vote: 1, -1, or 0 (none).")
    score: int = Field(description="The sum of the comment's votes' weights (down-votes negative).")
    upvotes: int = Field(description="How many voted the comment up.")
    downvotes: int = Field(description="How many voted the comment down.")


class CommentAuthor(BaseModel):
    """The public profile of a comment's author (never the email)."""

    id: int
    username: str


class CommentPublic(BaseModel):
    """A comment as every route answers it. A deleted comment that still has replies keeps its
    place in the thread with ``deleted: true`` and ``body`` and ``author`` null."""

    id: int
    post_id: int
    parent_id: int | None = Field(description="The comment replied to; null at the top level.")
    depth: int = Field(description="1 for a top-level comment, one more per reply level.")
    body: str | None = Field(description="Null once the comment is deleted.")
    author: CommentAuthor | None = Field(
        description="Null once the comment is deleted, or its author's account is."
    )
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None = Field(description="The last edit of the body, if any.")
    deleted: bool
    score: int = Field(description="The sum of the comment's votes' weights (down-votes negative).")
    upvotes: int
    downvotes: int
    reply_count: int = Field(
        description=(
            "Direct replies stored (deleted ones still holding replies included): more than "
            "`replies` holds means more can be fetched with `parent_id`."
        )
    )
    replies: list[CommentPublic] = Field(
        default_factory=list,
        description="Nested replies, in comment pages without `parent_id`; empty elsewhere.",
    )


class CommentRevisionPublic(BaseModel):
    """A previous version of a comment's body."""

    id: int
    comment_id: int
    body: str
    created_at: datetime = Field(description="When an edit replaced this version.")
