"""Bad input at the edges: every abuse a client can send is a 4xx with postkit's error body,
never a 5xx and never a hang, through the ASGI app and through a real uvicorn server.

The ASGI half runs with ``raise_app_exceptions=False`` so a crash shows up as the 500 a client
would see; the server half talks raw bytes over a socket, with timeouts, and finally checks that
the server still serves and logged no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.api import KitClient
from tests.support.api import TestUser as KitUser
from tests.support.databases import migrated_database
from tests.support.ports import free_port
from tests.support.servers import LiveProcess, serve, server_env, uvicorn_command

BODY_LIMIT = 4096
NESTING = 100_000

# Every route that reads a request body, with a body that is valid in shape.
JSON_BODY_ROUTES = [
    ("POST", "/posts", {"title": "t", "content": "c"}),
    ("PUT", "/posts/{post}", {"title": "t", "content": "c"}),
    ("PATCH", "/posts/{post}", {"title": "t"}),
    ("POST", "/vote", {"post_id": "{post}", "dir": 1}),
    ("POST", "/users", {"email": "x@example.com", "password": "long enough password"}),
    ("PATCH", "/users/me", {"username": "someone_else"}),
    ("POST", "/token/refresh", {"refresh_token": "x" * 43}),
]


async def _setup(
    make_client: Callable[..., Awaitable[KitClient]],
    new_user: Callable[..., Awaitable[KitUser]],
    **settings: Any,
) -> tuple[KitClient, KitUser, int]:
    client = await make_client(raise_app_exceptions=False, **settings)
    user = await new_user(client)
    created = await client.post(
        "/posts", json={"title": "edge", "content": "x"}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    return client, user, created.json()["id"]


def _path(path: str, post: int) -> str:
    return path.replace("{post}", str(post))


def _assert_client_error(response: Any, *statuses: int) -> None:
    """A 4xx (one of ``statuses`` when given) with postkit's ``{"detail", "code"}`` body."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"detail", "code"}, body
    assert isinstance(body["code"], str), body
    assert body["code"], body


# --- Through the ASGI app -----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "_body"), JSON_BODY_ROUTES)
async def test_oversized_bodies_are_413(make_client, new_user, method, path, _body) -> None:
    client, user, post = await _setup(make_client, new_user, max_body_bytes=BODY_LIMIT)
    oversized = b'{"title": "' + b"a" * (BODY_LIMIT * 4) + b'"}'
    response = await client.request(
        method,
        _path(path, post),
        content=oversized,
        headers={**user.headers, "Content-Type": "application/json"},
    )
    _assert_client_error(response, 413)
    assert response.json()["code"] == "BODY_TOO_LARGE"


async def test_oversized_login_form_is_413(make_client, new_user) -> None:
    client, _, _ = await _setup(make_client, new_user, max_body_bytes=BODY_LIMIT)
    response = await client.post(
        "/login",
        content=b"username=" + b"a" * (BODY_LIMIT * 4) + b"&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_client_error(response, 413)


@pytest.mark.parametrize(("method", "path", "_body"), JSON_BODY_ROUTES)
async def test_deeply_nested_json_is_422(make_client, new_user, method, path, _body) -> None:
    client, user, post = await _setup(make_client, new_user)
    for body in (
        b"[" * NESTING + b"]" * NESTING,
        b'{"title": ' + b"[" * NESTING + b"]" * NESTING + b"}",
    ):
        response = await client.request(
            method,
            _path(path, post),
            content=body,
            headers={**user.headers, "Content-Type": "application/json"},
        )
        _assert_client_error(response, 422)


@pytest.mark.parametrize(("method", "path", "_body"), JSON_BODY_ROUTES)
async def test_invalid_utf8_json_is_422(make_client, new_user, method, path, _body) -> None:
    client, user, post = await _setup(make_client, new_user)
    for body in (b'{"title": "\xff\xfe", "content": "x"}', b"\xff\xfe\xfd", b'{"title": "\xc3"}'):
        response = await client.request(
            method,
            _path(path, post),
            content=body,
            headers={**user.headers, "Content-Type": "application/json"},
        )
        _assert_client_error(response, 422)


@pytest.mark.parametrize(
    "text",
    ["a\\u0000b", "\\ud800", "\\udfff tail", "\\ud83d", "x" * 70_000],
    ids=["nul", "lone-high-surrogate", "lone-low-surrogate", "half-emoji", "very-long"],
)
@pytest.mark.parametrize(("method", "path", "template"), JSON_BODY_ROUTES)
async def test_unstorable_strings_in_every_field_are_4xx(
    make_client, new_user, method, path, template, text
) -> None:
    client, user, post = await _setup(make_client, new_user)
    for field, value in template.items():
        if not isinstance(value, str) or value == "{post}":
            continue
        fields = [
            f'"{k}": "{text}"' if k == field else f'"{k}": {_json(v, post)}'
            for k, v in template.items()
        ]
        response = await client.request(
            method,
            _path(path, post),
            content=("{" + ", ".join(fields) + "}").encode(),
            headers={**user.headers, "Content-Type": "application/json"},
        )
        assert response.status_code < 500, (field, response.status_code, response.text[:300])
        if response.status_code >= 400:
            _assert_client_error(response)


def _json(value: Any, post: int) -> str:
    if value == "{post}":
        return str(post)
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize(
    "login",
    ["a\x00b", "\ud800x", "x" * 100_000, "", " ", "%00", "@", "a@b@c", "\u202e\u0000"],
    ids=["nul", "surrogate", "huge", "empty", "blank", "percent", "at", "ats", "bidi-nul"],
)
async def test_login_with_hostile_usernames_is_4xx(make_client, new_user, login) -> None:
    client, _, _ = await _setup(make_client, new_user)
    form = "username=" + _form_escape(login) + "&password=whatever-password"
    response = await client.post(
        "/login",
        content=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_client_error(response, 401, 422)


def _form_escape(value: str) -> str:
    from urllib.parse import quote

    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@pytest.mark.parametrize(
    "query",
    [
        "search=%00",
        "search=%FF%FE",
        "search=%ED%A0%80",
        "search=" + "a" * 10_000,
        "search=%25%5F%5C",
        "limit=abc",
        "limit=0",
        "limit=100000000000000000000000000",
        "skip=-1",
        "skip=100000000000000000000000000",
        "sort=sideways",
        "cursor=",
        "cursor=%00",
        "cursor=not-a-cursor",
        "cursor=" + "A" * 600,
        "cursor=eyJ4IjoxfQ",
        "cursor=MjAyNi0wMS0wMVQwMDowMDowMFp8LTE",
        "limit=10&limit=20&limit=abc",
        "search=%C0%AF",
    ],
)
async def test_hostile_feed_queries_are_4xx_or_empty(make_client, new_user, query) -> None:
    client, user, _ = await _setup(make_client, new_user)
    response = await client.get(f"/posts?{query}", headers=user.headers)
    if response.status_code == 200:
        assert isinstance(response.json(), list)
    else:
        _assert_client_error(response, 400, 422)


@pytest.mark.parametrize(
    "post_id", ["0", "-1", "2147483648", "9223372036854775808", "1" * 40, "abc", "1.5", "%00"]
)
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/posts/{id}"),
        ("PATCH", "/posts/{id}"),
        ("DELETE", "/posts/{id}"),
        ("PUT", "/posts/{id}/vote"),
        ("DELETE", "/posts/{id}/vote"),
        ("GET", "/users/{id}"),
    ],
)
async def test_out_of_range_ids_are_404_and_malformed_ones_422(
    make_client, new_user, method, template, post_id
) -> None:
    """The same on every id route: an integer no row can have is 404, like any missing id; a
    path segment that is not an integer is 422."""
    client, user, _ = await _setup(make_client, new_user)
    kwargs: dict[str, Any] = {"headers": user.headers}
    if method == "PATCH":
        kwargs["json"] = {"title": "x"}
    response = await client.request(method, template.replace("{id}", post_id), **kwargs)
    expected = 404 if post_id.lstrip("-").isdigit() else 422
    _assert_client_error(response, expected)


@pytest.mark.parametrize(
    "body",
    [
        {"post_id": 2**31, "dir": 1},
        {"post_id": 2**63, "dir": 1},
        {"post_id": -1, "dir": 0},
        {"post_id": 10**40, "dir": 1},
        {"post_id": 1, "dir": 2},
        {"post_id": 1, "dir": -1},
        {"post_id": "1", "dir": "1"},
        {"post_id": 1.5, "dir": 1},
        {"post_id": None, "dir": 1},
        {"dir": 1},
        [],
    ],
)
async def test_hostile_vote_bodies_are_4xx(make_client, new_user, body) -> None:
    client, user, _ = await _setup(make_client, new_user)
    response = await client.post("/vote", json=body, headers=user.headers)
    if response.status_code < 300:  # "1" coerced to 1 is a fine vote on a real post
        return
    _assert_client_error(response, 404, 422)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer  x",
        "Basic dXNlcjpwYXNz",
        "bearer garbage",
        "Bearer a.b.c",
        "Bearer " + "a" * 100_000,
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
        "Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6Ilx1MDAwMCJ9.e30.x",
        "Bearer ..",
        "Bearer \t",
    ],
)
async def test_hostile_authorization_headers_are_401(make_client, new_user, authorization) -> None:
    client, _, _ = await _setup(make_client, new_user)
    for method, path in [("GET", "/posts"), ("GET", "/users/me"), ("POST", "/logout")]:
        response = await client.request(method, path, headers={"Authorization": authorization})
        _assert_client_error(response, 401)
        assert response.headers.get("www-authenticate") == "Bearer"


async def test_raw_header_bytes_that_are_not_ascii_are_401(make_client, new_user) -> None:
    client, _, _ = await _setup(make_client, new_user)
    # httpx refuses to send non-ASCII header values, so speak ASGI to the app directly.
    for raw in (b"Bearer \xff\xfe", b"Bearer \x00", b"\xc3\xa9t\xc3\xa9"):
        status, body = await _asgi_get(client, "/users/me", [(b"authorization", raw)])
        assert status == 401, (raw, status, body)


async def test_many_and_repeated_headers_are_handled(make_client, new_user) -> None:
    client, user, _ = await _setup(make_client, new_user)
    headers = [(f"x-junk-{i}".encode(), b"v" * 100) for i in range(1000)]
    headers += [(b"authorization", user.headers["Authorization"].encode())] * 3
    status, body = await _asgi_get(client, "/users/me", headers)
    assert status in (200, 401), (status, body)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=zz",
        "application/json; charset=latin-1",
        "application/vnd.evil+json",
        "garbage",
        "",
    ],
)
async def test_wrong_content_types_are_4xx(make_client, new_user, content_type) -> None:
    client, user, _ = await _setup(make_client, new_user)
    response = await client.post(
        "/posts",
        content=b'{"title": "t", "content": "c"}',
        headers={**user.headers, "Content-Type": content_type},
    )
    if response.status_code == 201:  # a JSON body under a JSON-ish type is fine to accept
        assert "json" in content_type
        return
    _assert_client_error(response, 415, 422)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=zz", b"garbage"),
        ("multipart/form-data", b"--x\r\n"),
        (
            "multipart/form-data; boundary=zz",
            b"--zz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--zz--\r\n",
        ),
        ("application/x-www-form-urlencoded", b"\xff\xfe=\xfd&password=%ZZ"),
        ("application/json", b'{"username": "u", "password": "p"}'),
    ],
)
async def test_malformed_login_forms_are_4xx(make_client, new_user, content_type, body) -> None:
    client, _, _ = await _setup(make_client, new_user)
    response = await client.post("/login", content=body, headers={"Content-Type": content_type})
    _assert_client_error(response, 401, 422)


async def _asgi_get(
    client: KitClient, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(client.app(scope, receive, send), timeout=30)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


# --- Through a real server ----------------------------------------------------------------------


def _raw_exchange(port: int, data: bytes, *, timeout: float = 15.0) -> tuple[int | None, float]:
    """Send raw bytes, read until the server answers or closes; return (status, seconds).

    ``None`` means the server closed the connection without an answer (what uvicorn does with
    some unparseable requests): acceptable, as long as it does so promptly.
    """
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may give up on us mid-upload; read whatever it answered.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        received = b""
        try:
            while b"\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
    elapsed = time.monotonic() - started
    if not received:
        return None, elapsed
    status_line = received.split(b"\r\n", 1)[0].split()
    return int(status_line[1]), elapsed


def _request(method: str, target: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    if body and not any(
        h.lower().startswith((b"content-length", b"transfer-encoding")) for h in headers
    ):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _chunked(body: bytes, size: int = 8192) -> bytes:
    out = b""
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


async def _token_for_server(url: str) -> str:
    import httpx

    from tests.support.api import register

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        account = await register(client)
        created = await client.post(
            "/posts", json={"title": "t", "content": "c"}, headers=account.headers
        )
        assert created.status_code == 201, created.text
        return account.headers["Authorization"]


JSON = b"Content-Type: application/json"
NESTED = b"[" * NESTING + b"]" * NESTING
OVERSIZED = b"x" * (BODY_LIMIT * 10)

# Raw requests and the statuses each may get; ``None``: the server closed without answering.
# Each builder takes the ``Authorization`` header line of a real account.
HOSTILE_REQUESTS = [
    pytest.param(
        lambda auth: _request("GET", b"/posts?search=" + b"a" * 200_000, [auth]),
        {400, 414, 422, 431, None},
        id="huge query string",
    ),
    pytest.param(
        lambda auth: _request("GET", b"/posts?search=\xff\xfe%ff", [auth]),
        {200, 400, 422, None},
        id="raw invalid utf-8 in the query",
    ),
    pytest.param(
        lambda auth: _request("GET", b"/posts/\xff", [auth]),
        {400, 404, 422, None},
        id="raw invalid utf-8 in the path",
    ),
    pytest.param(
        lambda auth: _request("GET", b"/posts/%ff%00", [auth]),
        {400, 404, 422},
        id="percent-encoded junk path",
    ),
    pytest.param(
        lambda auth: _request("GET", b"/posts", [b"Authorization: Bearer " + b"a" * 60_000]),
        {400, 401, 431, None},
        id="huge authorization header",
    ),
    pytest.param(
        lambda auth: _request(
            "GET", b"/posts", [auth] + [b"X-Junk-%d: v" % i for i in range(3000)]
        ),
        {200, 400, 431, None},
        id="thousands of headers",
    ),
    pytest.param(
        lambda auth: _request("GET", b"/users/me", [b"Authorization: Bearer \xff\xfe\x80"]),
        {400, 401, None},
        id="non-ascii authorization",
    ),
    pytest.param(
        lambda auth: _request("POST", b"/posts", [auth, JSON], OVERSIZED),
        {413},
        id="oversized body, declared",
    ),
    pytest.param(
        lambda auth: _request("POST", b"/posts", [auth, JSON, b"Content-Length: 999999999"]),
        {413},
        id="oversized body, declared but never sent",
    ),
    pytest.param(
        lambda auth: _request(
            "POST", b"/posts", [auth, JSON, b"Transfer-Encoding: chunked"], _chunked(OVERSIZED)
        ),
        {413},
        id="oversized body, chunked",
    ),
    pytest.param(
        lambda auth: _request("POST", b"/users", [JSON], OVERSIZED),
        {413},
        id="oversized registration",
    ),
    pytest.param(
        lambda auth: _request("POST", b"/users", [JSON], NESTED),
        {413, 422},
        id="deeply nested json",
    ),
    pytest.param(
        lambda auth: _request("POST", b"/vote", [auth, JSON], b"[" * 2000 + b"]" * 2000),
        {422},
        id="deeply nested json within the limit",
    ),
    pytest.param(
        lambda auth: _request(
            "POST", b"/posts", [auth, JSON], b'{"title": "\xff", "content": "x"}'
        ),
        {422},
        id="invalid utf-8 json",
    ),
    pytest.param(
        lambda auth: _request("POST", b"/posts", [auth, JSON, b"Content-Length: abc"], b"{}"),
        {400, None},
        id="garbage content-length",
    ),
    pytest.param(
        lambda auth: _request(
            "POST", b"/posts", [auth, JSON, b"Transfer-Encoding: gzip, chunked"], b"zz\r\n"
        ),
        {400, 422, 501, None},
        id="bad transfer-encoding",
    ),
    pytest.param(
        lambda auth: _request(
            "POST",
            b"/posts",
            [auth, JSON, b"Content-Length: 4", b"Transfer-Encoding: chunked"],
            b"0\r\n\r\n",
        ),
        {400, 422, None},
        id="request smuggling attempt",
    ),
    pytest.param(
        lambda auth: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        {400, None},
        id="http/0.9 garbage",
    ),
]


@dataclass
class HostileTarget:
    server: LiveProcess
    port: int
    auth: bytes  # the ``Authorization`` header line of a real account


@pytest.fixture(scope="module")
def hostile_target(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileTarget]:
    """One uvicorn server for all the hostile requests; when they are done, it must still serve
    and must have logged no traceback."""
    directory = tmp_path_factory.mktemp("hostile")
    port = free_port()
    with migrated_database(backend, directory, "postkit_hostile") as database_url:
        env = server_env(database_url, max_body_bytes=BODY_LIMIT, database_pool_size=2)
        with serve(uvicorn_command(port), env=env, log_dir=directory, port=port) as server:
            authorization = asyncio.run(_token_for_server(server.url))
            auth = b"Authorization: " + authorization.encode()
            yield HostileTarget(server, port, auth)
            # Still serving, and nothing crashed on the way.
            status, _ = _raw_exchange(port, _request("GET", b"/users/me", [auth]))
            assert status == 200
            assert "Traceback" not in server.log, server.log[-5000:]
            assert "Exception in ASGI application" not in server.log, server.log[-5000:]


@pytest.mark.slow
@pytest.mark.parametrize(("build", "allowed"), HOSTILE_REQUESTS)
def test_real_server_survives_hostile_requests(
    hostile_target: HostileTarget, build: Callable[[bytes], bytes], allowed: set[int | None]
) -> None:
    status, seconds = _raw_exchange(hostile_target.port, build(hostile_target.auth))
    assert status in allowed, (
        f"status {status} (allowed {allowed})\n{hostile_target.server.log[-3000:]}"
    )
    assert seconds <= 10, f"answered after {seconds:.1f} s"
