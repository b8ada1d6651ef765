"""The route class every postkit route uses: it turns errors into postkit's error body.

A library cannot install exception handlers on its host's app, so the handling lives on the routes
themselves and travels with them through ``include_router``, whatever prefix the host picks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from postkit.errors import ErrorCode, PostKitError

__all__ = ["PostKitRoute"]

logger = logging.getLogger("postkit")

_DB_UNAVAILABLE_DETAIL = "The database is unavailable; try again shortly."


def _database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (PoolTimeoutError, DisconnectionError, ConnectionError)):
        return True
    if isinstance(exc, DBAPIError):
        return (
            exc.connection_invalidated
            or isinstance(exc.orig, (OSError, ConnectionError))
            or (
                type(exc.orig).__name__
                in {
                    "ConnectionDoesNotExistError",
                    "InterfaceError",
                    "CannotConnectNowError",
                    "ConnectionFailureError",
                    "TooManyConnectionsError",
                }
            )
        )
    return isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)


class PostKitRoute(APIRoute):
    """An :class:`APIRoute` that answers :class:`PostKitError`, validation errors and database
    outages with ``{"detail", "code"}`` bodies instead of leaving them to the host app."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except PostKitError as exc:
                return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
            except RequestValidationError as exc:
                return JSONResponse(
                    {
                        "detail": jsonable_encoder(exc.errors()),
                        "code": ErrorCode.VALIDATION_ERROR.value,
                    },
                    status_code=422,
                )
            except Exception as exc:
                if not _database_unavailable(exc):
                    raise
                logger.warning("postkit: database unavailable: %s", exc.__class__.__name__)
                return JSONResponse(
                    {"detail": _DB_UNAVAILABLE_DETAIL, "code": ErrorCode.DATABASE_UNAVAILABLE},
                    status_code=503,
                    headers={"Retry-After": "5"},
                )

        return handle
