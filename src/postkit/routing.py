"""The route class every postkit route uses: it turns errors into postkit's error body.

A library cannot install exception handlers on its host's app, so the handling lives on the routes
themselves and travels with them through ``include_router``, whatever prefix the host picks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Message

from postkit.db import REQUEST_FAILED
from postkit.errors import ErrorCode, PostKitError

__all__ = ["PostKitRoute", "body_limited_route"]

logger = logging.getLogger("postkit")

# Where FastAPI keeps the exit stack of dependencies declared with scope="function".
_FUNCTION_STACK = "fastapi_function_astack"
_DB_UNAVAILABLE_DETAIL = "The database is unavailable; try again shortly."
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _AsciiJSONResponse(JSONResponse):
    # Validation errors echo the input, which may hold unpaired surrogates: escape them.
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


class _BodyTooLarge(Exception):
    pass


async def _with_limited_body(request: Request, limit: int) -> Request:
    """Read the body up to ``limit`` bytes (declared or streamed), then replay it to FastAPI."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    replayed = False

    async def receive() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


def _error_response(exc: Exception, limit: int | None) -> Response | None:
    """The response a client-caused error or an outage gets; ``None`` for a real bug."""
    if isinstance(exc, _BodyTooLarge):
        return JSONResponse(
            {
                "detail": f"The request body is larger than {limit} bytes",
                "code": ErrorCode.BODY_TOO_LARGE.value,
            },
            status_code=413,
        )
    if isinstance(exc, ClientDisconnect):
        # The client went away (or broke the framing) mid-body: no one is left to read an
        # answer, and it is not a server error worth a traceback.
        return Response(status_code=400)
    if isinstance(exc, PostKitError):
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
    if isinstance(exc, HTTPException):
        # FastAPI and Starlette answer a body they cannot parse (JSON nested too deep, bytes
        # that are not UTF-8, a broken multipart form) with a bare 400: give it the validation
        # error every other malformed body gets.
        if exc.status_code != 400 or (exc.__cause__ or exc.__context__) is None:
            return None
        return _AsciiJSONResponse(
            {
                "detail": [{"type": "body_unparsable", "loc": ["body"], "msg": str(exc.detail)}],
                "code": ErrorCode.VALIDATION_ERROR.value,
            },
            status_code=422,
        )
    if isinstance(exc, RequestValidationError):
        return _AsciiJSONResponse(
            {"detail": jsonable_encoder(exc.errors()), "code": ErrorCode.VALIDATION_ERROR.value},
            status_code=422,
        )
    if _database_unavailable(exc):
        logger.warning("postkit: database unavailable: %s", exc.__class__.__name__)
        return JSONResponse(
            {"detail": _DB_UNAVAILABLE_DETAIL, "code": ErrorCode.DATABASE_UNAVAILABLE},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return None


def _database_unavailable(exc: BaseException) -> bool:
    # asyncio.TimeoutError: a query over database_command_timeout (a database that stopped
    # answering). On Python 3.11+ it is the builtin TimeoutError, an OSError; not on 3.10.
    if isinstance(exc, (PoolTimeoutError, DisconnectionError, ConnectionError)):
        return True
    if isinstance(exc, asyncio.TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return (
            exc.connection_invalidated
            or isinstance(exc.orig, (OSError, ConnectionError, asyncio.TimeoutError))
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
    outages with ``{"detail", "code"}`` bodies instead of leaving them to the host app.

    With :attr:`max_body_bytes` set (see :func:`body_limited_route`), a larger request body is
    answered 413 ``BODY_TOO_LARGE`` before FastAPI parses it.
    """

    max_body_bytes: int | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = self.max_body_bytes

        async def handle(request: Request) -> Response:
            try:
                # Dependencies with scope="function" (the request's session) close on this
                # stack, inside the try: a commit that fails because the database went away
                # while the route ran is a 503 too, not a 500 from outside the route.
                async with AsyncExitStack() as function_stack:
                    request.scope[_FUNCTION_STACK] = function_stack
                    if limit is not None and request.method not in _BODYLESS_METHODS:
                        request = await _with_limited_body(request, limit)
                    return await handler(request)
            except Exception as exc:
                response = _error_response(exc, limit)
                if response is None:
                    raise
                # The session normally closed above and saw the exception. Should FastAPI
                # close it after this returns instead (the stack's scope key is FastAPI's own,
                # not a public API), this mark still makes it roll back, not commit.
                request.scope[REQUEST_FAILED] = True
                return response

        return handle


def body_limited_route(max_body_bytes: int) -> type[PostKitRoute]:
    """A :class:`PostKitRoute` class refusing request bodies over ``max_body_bytes`` with 413:
    ``APIRouter(route_class=body_limited_route(kit.settings.max_body_bytes))``."""
    return type("BodyLimitedPostKitRoute", (PostKitRoute,), {"max_body_bytes": max_body_bytes})
