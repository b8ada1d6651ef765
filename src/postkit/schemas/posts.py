"""Post schemas: what clients send to write a post and what they read back.

Request bodies forbid unknown fields, so an ``owner_id`` (or ``votes``) in a body is a 422 rather
than silently ignored: the owner always comes from the token.
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
    StringConstraints,
    model_validator,
)

__all__ = [
    "TITLE_MAX_LENGTH",
    "PostCreate",
    "PostOwner",
    "PostPatch",
    "PostPublic",
    "PostReplace",
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


class PostCreate(BaseModel):
    """A new post (``POST /posts``), and the full replacement of one (``PUT /posts/{id}``)."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    content: Content
    published: StrictBool = True


class PostReplace(PostCreate):
    """``PUT /posts/{id}``: every field is replaced; an absent ``published`` means ``true``."""


class PostPatch(BaseModel):
    """``PATCH /posts/{id}``: only the fields sent change. ``null`` is not a value for any."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    content: Content | None = None
    published: StrictBool | None = None

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
    owner_id: int
    owner: PostOwner
    votes: int = Field(description="The post's vote total (the sum of its votes' weights).")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Fields added by plugins (`extra_post_fields`)."
    )
