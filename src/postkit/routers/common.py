"""Declarations every router shares: the path id and the straight-to-JSON response."""

from collections.abc import Collection
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import pydantic_core
from fastapi import Path, Request, Response

__all__ = ["ItemId", "json_response", "paging_headers"]

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


def paging_headers(
    request: Request, cursor: str | None, *, replaces: Collection[str] = ("cursor",)
) -> dict[str, str] | None:
    """The next page's headers: its URL in ``Link`` (``rel="next"``), the request's own with
    the query parameters ``replaces`` names dropped and ``cursor`` last, and the cursor itself
    in ``X-Next-Cursor``. ``None`` on the last page."""
    if cursor is None:
        return None
    url = request.url
    query = [
        (key, value)
        for key, value in parse_qsl(url.query, keep_blank_values=True)
        if key not in replaces
    ]
    query.append(("cursor", cursor))
    return {"Link": f'<{url.replace(query=urlencode(query))}>; rel="next"', "X-Next-Cursor": cursor}
