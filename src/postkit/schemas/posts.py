"""Post schemas: what clients send to write a post and what they read back.

Request bodies forbid unknown fields, so an ``owner_id`` (or ``votes``) in a body is a 422 rather
than silently ignored: the owner always comes from the token. The one exception is ``id`` in a
``PUT`` or ``PATCH`` body, which clients of the tutorial API send: it is accepted when it equals
the path's id (the router refuses any other value).

``PATCH`` fields may be omitted but never ``null``, and the schema says so: each is documented as
its type alone, without a ``null`` branch or a ``null`` default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

__all__ = [
    "TITLE_MAX_LENGTH",
    "PostCreate",
    "PostOwner",
    "PostPatch",
    "PostPublic",
    "PostReplace",
    "PostRevisionPublic",
    "storable_text",
]

TITLE_MAX_LENGTH = 300


def storable_text(value: str) -> str:
    """Refuse text no database can store: NUL characters and unpaired surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_LENGTH),
    AfterValidator(storable_text),
]
"""A title: surrounding whitespace stripped, then 1 to 300 characters (blank titles refused)."""

# The upper bound is the kit's ``post_content_max_length`` setting, checked by the router.
Content = Annotated[str, StringConstraints(min_length=1), AfterValidator(storable_text)]


def _omittable(description: str | None = None) -> Any:
    """A field that may be left out (default ``None``) but is documented as its type alone."""

    def document(schema: dict[str, Any]) -> None:
        schema.pop("default", None)

    return Field(default=None, description=description, json_schema_extra=document)


BODY_ID_DESCRIPTION = (
    "Optional, for clients of the tutorial API: the post's id, which must equal the id in the "
    "path (422 otherwise). It never changes the post's id."
)


class PostCreate(BaseModel):
    """A new post (``POST /posts``), and the full replacement of one (``PUT /posts/{id}``)."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    content: Content
    published: StrictBool = True


class PostReplace(PostCreate):
    """``PUT /posts/{id}``: every field is replaced; an absent ``published`` means ``true``."""

    id: StrictInt | SkipJsonSchema[None] = _omittable(BODY_ID_DESCRIPTION)

    @model_validator(mode="after")
    def _no_null_id(self) -> PostReplace:
        if "id" in self.model_fields_set and self.id is None:
            raise ValueError("id may be omitted but not null")
        return self


class PostPatch(BaseModel):
    """``PATCH /posts/{id}``: only the fields sent change. ``null`` is not a value for any (the
    schema documents each field without ``null``; a ``null`` is refused with 422)."""

    model_config = ConfigDict(extra="forbid")

    title: Title | SkipJsonSchema[None] = _omittable()
    content: Content | SkipJsonSchema[None] = _omittable()
    published: StrictBool | SkipJsonSchema[None] = _omittable()
    id: StrictInt | SkipJsonSchema[None] = _omittable(BODY_ID_DESCRIPTION)

    @model_validator(mode="after")
    def _no_nulls(self) -> PostPatch:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} may be omitted but not null")
        return self


class PostOwner(BaseModel):
    """The public profile of a post's author (never the email)."""

    id: int
    username: str


class PostPublic(BaseModel):
    """A post as every route answers it."""

    id: int
    title: str
    content: str
    published: bool
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None = Field(
        description="When the title or content last changed; `null` until it has been edited."
    )
    owner_id: int
    owner: PostOwner
    score: int = Field(description="The post's score: the sum of its votes' signed weights.")
    upvotes: int = Field(description="How many up-votes the post has.")
    downvotes: int = Field(description="How many down-votes the post has.")
    votes: int = Field(
        deprecated=True,
        description="Deprecated alias of `score` (removed in the next release).",
    )
    comment_count: int = Field(
        default=0, description="The post's comments and replies, deleted ones not counted."
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Fields added by plugins (`extra_post_fields`)."
    )


class PostRevisionPublic(BaseModel):
    """A previous version of a post (``GET /posts/{id}/revisions``)."""

    id: int
    post_id: int
    title: str
    content: str
    published: bool
    replaced_at: datetime = Field(description="When the edit that replaced this version was made.")
