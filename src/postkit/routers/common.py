"""Declarations every router shares: the path id and the straight-to-JSON response."""

from typing import Annotated, Any

import pydantic_core
from fastapi import Path, Response

__all__ = ["ItemId", "json_response"]

ItemId = Annotated[
    int,
    Path(description="The item's id. An id that does not exist, or that you may not see, is 404."),
]
"""A path id. Any integer is accepted; ids out of the database's range answer 404 like any
other id that does not exist (see :data:`postkit.models.MAX_ID`)."""


def json_response(
    data: Any, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Serialise ``data`` (dicts, lists, datetimes) straight to a JSON response."""
    return Response(
        pydantic_core.to_json(data),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
