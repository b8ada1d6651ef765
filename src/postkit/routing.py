"""The route class every postkit route uses: it turns errors into postkit's error body.

A library cannot install exception handlers on its host's app, so the handling lives on the routes
themselves and travels with them through ``include_router``, whatever prefix the host picks. Host
routes get the same answers from :func:`install_error_handlers` (``kit.install_error_handlers``)
or by using :class:`PostKitRoute` as their route class.

Nothing here decides about transactions: services commit their writes, and the request's session
rolls back what is left when it closes (:meth:`postkit.db.Database.session`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Message

from postkit.db import is_outage
from postkit.errors import BodyTooLarge, DatabaseUnavailable, ErrorCode, PostKitError

__all__ = ["PostKitRoute", "body_limited_route", "install_error_handlers"]

logger = logging.getLogger("postkit")

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _AsciiJSONResponse(JSONResponse):
    # Validation errors echo the input, which may hold unpaired surrogates: escape them.
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


async def _with_limited_body(request: Request, limit: int) -> Request:
    """Read the body up to ``limit`` bytes (declared or streamed), then replay it to FastAPI."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
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


def _error_response(exc: Exception) -> Response | None:
    """The response a client-caused error or an outage gets; ``None`` for a real bug."""
    if isinstance(exc, ClientDisconnect):
        # The client went away (or broke the framing) mid-body: no one is left to read an
        # answer, and it is not a server error worth a traceback.
        return Response(status_code=400)
    if isinstance(exc, PostKitError):
        return _postkit_error_response(exc)
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
    if is_outage(exc):
        return _outage_response(exc)
    return None


def _postkit_error_response(exc: PostKitError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def _outage_response(exc: BaseException) -> JSONResponse:
    logger.warning("postkit: database unavailable: %s", exc.__class__.__name__)
    return _postkit_error_response(DatabaseUnavailable())


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
                if limit is not None and request.method not in _BODYLESS_METHODS:
                    request = await _with_limited_body(request, limit)
                return await handler(request)
            except Exception as exc:
                response = _error_response(exc)
                if response is None:
                    raise
                return response

        return handle


def body_limited_route(max_body_bytes: int) -> type[PostKitRoute]:
    """A :class:`PostKitRoute` class refusing request bodies over ``max_body_bytes`` with 413:
    ``APIRouter(route_class=body_limited_route(kit.settings.max_body_bytes))``."""
    return type("BodyLimitedPostKitRoute", (PostKitRoute,), {"max_body_bytes": max_body_bytes})


def install_error_handlers(app: FastAPI) -> None:
    """Answer postkit's errors and database outages on the host's own routes as postkit's do.

    After ``kit.install_error_handlers(app)``, a host route that raises a
    :class:`~postkit.errors.PostKitError` (``kit.current_user``'s 401, ``kit.posts.find``'s 404)
    answers ``{"detail", "code"}``, and one whose database link is lost, whose pool is
    exhausted, or whose query times out answers 503 ``DATABASE_UNAVAILABLE`` with
    ``Retry-After`` instead of a 500. Any other exception stays a 500. postkit's own routes
    need none of this: their route class answers the same way wherever they are mounted.
    """

    async def postkit_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PostKitError)
        return _postkit_error_response(exc)

    async def maybe_outage(_request: Request, exc: Exception) -> Response:
        if not is_outage(exc):
            raise exc
        return _outage_response(exc)

    app.add_exception_handler(PostKitError, postkit_error)
    for outage_type in (SQLAlchemyError, OSError, asyncio.TimeoutError):
        app.add_exception_handler(outage_type, maybe_outage)
