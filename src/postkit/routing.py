"""The route class every postkit route uses: it turns errors into postkit's error body, and
keeps what it answers truthful to the OpenAPI document wherever the host mounts it.

A library cannot install exception handlers on its host's app, so the handling lives on the routes
themselves and travels with them through ``include_router``, whatever prefix the host picks. Host
routes get the same answers from :func:`install_error_handlers` (``kit.install_error_handlers``)
or by using :class:`PostKitRoute` as their route class.

The route class also answers a path spelled with a trailing slash (``/posts/``) as the path itself,
without a redirect; lists every method the path supports in a 405's ``Allow`` header (Starlette
lists only the first matching route's); never echoes a password or token back in a 422; and names
``postkit:*`` routes' operations by their route name (``login``, ``list_posts``).

Nothing here decides about transactions: services commit their writes, and the request's session
rolls back what is left when it closes (:meth:`postkit.db.Database.session`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from postkit.db import is_outage
from postkit.errors import BodyTooLarge, DatabaseUnavailable, ErrorCode, PostKitError

__all__ = [
    "SECRET_FIELD_NAMES",
    "PostKitRoute",
    "body_limited_route",
    "install_error_handlers",
    "scrub_validation_errors",
]

logger = logging.getLogger("postkit")

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
_ROUTE_NAME_PREFIX = "postkit:"

SECRET_FIELD_NAMES = frozenset(
    {"password", "current_password", "new_password", "refresh_token", "access_token", "token"}
)
"""Fields whose submitted value a validation error never echoes back (with any field whose
schema says ``format: password``)."""

# Constraint values a 422 may still state for a secret field: limits, never the input.
_SAFE_CTX_KEYS = frozenset({"min_length", "max_length", "pattern", "ge", "gt", "le", "lt"})
_REDACTED = "[redacted]"


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


def _redact(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            key: _REDACTED if key in secrets else _redact(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, secrets) for item in value]
    return value


def scrub_validation_errors(
    errors: Iterable[dict[str, Any]], secrets: frozenset[str] = SECRET_FIELD_NAMES
) -> list[dict[str, Any]]:
    """``errors`` (pydantic's) without the submitted value of any field named in ``secrets``.

    An error located at a secret field loses its ``input`` and any ``ctx`` value that is not a
    stated limit. So does an error about a refused extra field (its value may be a misnamed
    secret) and one about a whole body that is not an object (a form, a JSON string sent as
    text: it may hold anything). An error about a whole object keeps its ``input`` with secret
    fields' values replaced by ``"[redacted]"``.
    """
    scrubbed: list[dict[str, Any]] = []
    for error in errors:
        error = dict(error)
        location = tuple(error.get("loc", ()))
        opaque_body = len(location) <= 1 and isinstance(error.get("input"), str | bytes)
        if error.get("type") == "extra_forbidden" or opaque_body:
            error.pop("input", None)
        elif any(isinstance(part, str) and part in secrets for part in location):
            error.pop("input", None)
            ctx = error.get("ctx")
            if isinstance(ctx, dict):
                error["ctx"] = {key: value for key, value in ctx.items() if key in _SAFE_CTX_KEYS}
        elif "input" in error:
            error["input"] = _redact(error["input"], secrets)
        scrubbed.append(error)
    return scrubbed


def _password_format_names(schema: Any) -> set[str]:
    """Property names whose JSON schema says ``format: password``, anywhere in ``schema``."""
    names: set[str] = set()
    if isinstance(schema, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if isinstance(prop, dict) and (
                prop.get("format") == "password"
                or any(
                    isinstance(branch, dict) and branch.get("format") == "password"
                    for branch in prop.get("anyOf", ())
                )
            ):
                names.add(name)
        for value in schema.values():
            if isinstance(value, dict | list):
                names |= _password_format_names(value)
    elif isinstance(schema, list):
        for item in schema:
            names |= _password_format_names(item)
    return names


def _secret_fields(route: APIRoute) -> frozenset[str]:
    """:data:`SECRET_FIELD_NAMES` plus the route's parameters and body fields documented with
    ``format: password``."""
    names = set(SECRET_FIELD_NAMES)
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        for field in (
            *dependant.query_params,
            *dependant.header_params,
            *dependant.cookie_params,
            *dependant.body_params,
        ):
            extra = field.field_info.json_schema_extra
            if isinstance(extra, dict) and extra.get("format") == "password":
                names.update({field.name, field.alias})
            annotation = field.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names |= _password_format_names(annotation.model_json_schema())
    return frozenset(names)


def _error_response(
    exc: Exception, secrets: frozenset[str] = SECRET_FIELD_NAMES
) -> Response | None:
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
            {
                "detail": jsonable_encoder(scrub_validation_errors(exc.errors(), secrets)),
                "code": ErrorCode.VALIDATION_ERROR.value,
            },
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

    It also:

    - answers its path with a trailing slash too (``/posts/`` as ``/posts``), directly, with no
      redirect (behind a TLS proxy a redirect would point at ``http://``, and clients drop the
      ``Authorization`` header on it). The OpenAPI document lists the path once.
    - answers a method the path does not support with 405 and an ``Allow`` header listing every
      method the app serves at that path, whichever route serves it.
    - never echoes a password or token field back in a 422 (:func:`scrub_validation_errors`).
    - names the operation of a route named ``postkit:<name>`` ``<name>`` (``login``,
      ``list_posts``), with the summary ``<Name>`` in words, unless given explicitly.

    With :attr:`max_body_bytes` set (see :func:`body_limited_route`), a larger request body is
    answered 413 ``BODY_TOO_LARGE`` before FastAPI parses it.
    """

    max_body_bytes: int | None = None

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        name = kwargs.get("name")
        if isinstance(name, str) and name.startswith(_ROUTE_NAME_PREFIX):
            short = name[len(_ROUTE_NAME_PREFIX) :]
            if kwargs.get("operation_id") is None:
                kwargs["operation_id"] = short
            if kwargs.get("summary") is None:
                kwargs["summary"] = short.replace("_", " ").capitalize()
        super().__init__(path, endpoint, **kwargs)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        path = scope.get("path", "")
        if match is Match.NONE and scope["type"] == "http" and len(path) > 1 and path[-1] == "/":
            match, child_scope = super().matches({**scope, "path": path[:-1]})
        return match, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.methods and scope["method"] not in self.methods:
            headers = {"Allow": ", ".join(_allowed_methods(scope, self.methods))}
            if "app" in scope:
                raise HTTPException(status_code=405, headers=headers)
            await PlainTextResponse("Method Not Allowed", status_code=405, headers=headers)(
                scope, receive, send
            )
            return
        await super().handle(scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = self.max_body_bytes
        secrets = _secret_fields(self)

        async def handle(request: Request) -> Response:
            try:
                if limit is not None and request.method not in _BODYLESS_METHODS:
                    request = await _with_limited_body(request, limit)
                return await handler(request)
            except Exception as exc:
                response = _error_response(exc, secrets)
                if response is None:
                    raise
                return response

        return handle


def _allowed_methods(scope: Scope, own: Iterable[str]) -> list[str]:
    """Every method the app serves at the scope's path: each one is probed against the app's
    routes (through included routers and prefixes), as a request with that method would be."""
    allowed = set(own)
    router = scope.get("router")
    routes = getattr(router, "routes", ())
    for method in _HTTP_METHODS:
        if method in allowed:
            continue
        probe: Scope = {
            "type": "http",
            "method": method,
            "path": scope["path"],
            "root_path": scope.get("root_path", ""),
            "headers": scope.get("headers", []),
            "query_string": b"",
        }
        # As the router dispatches: a full match anywhere wins over an earlier partial one.
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.add(method)
    return sorted(allowed)


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
