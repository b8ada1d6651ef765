"""The hand-written baseline: what a skilled engineer would write without postkit.

Starlette routing, an asyncpg pool and raw SQL on the database postkit migrated, answering the
benchmarked endpoints with the same JSON bodies and headers as postkit. It does the same work per
request that matters: it verifies the same JWT (same key, ``kid``, algorithm and required claims)
and checks the user row (active, ``token_version``, session not revoked) on every request; it
hashes and verifies passwords with the same passlib ``bcrypt_sha256`` context, off the event
loop; it keeps ``vote_count`` (the score), ``upvotes`` and ``downvotes`` and the stored ranks
(computed by the same formulas, :mod:`postkit.ranking`) in the same transaction as the vote.
JSON is encoded by
pydantic-core's Rust encoder, as FastAPI does for routes with a response model.

Configured by the same environment variables as postkit (``POSTKIT_DATABASE_URL``,
``POSTKIT_SECRET_KEY``, ``POSTKIT_BCRYPT_ROUNDS``, ...). Run it with
``uvicorn bench.baseline_app:app`` (or ``--app-dir bench baseline_app:app``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import hashlib
import importlib.util
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import jwt
from passlib.context import CryptContext
from pydantic import TypeAdapter
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _load_ranking() -> Any:
    """postkit's ranking formulas (``postkit/ranking.py``), loaded from their file alone.

    ``import postkit.ranking`` would import the whole postkit package (FastAPI, SQLAlchemy),
    whose memory and CPU the baseline must not carry: they are part of the comparison.
    """
    package = importlib.util.find_spec("postkit")  # finds the package without importing it
    assert package is not None
    assert package.submodule_search_locations
    path = Path(next(iter(package.submodule_search_locations))) / "ranking.py"
    spec = importlib.util.spec_from_file_location("_baseline_ranking", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rank_scores = _load_ranking().rank_scores


REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]
POST_COLUMNS = """
    p.id, p.title, p.content, p.published, p.created_at, p.updated_at, p.edited_at, p.owner_id,
    u.username, p.vote_count, p.upvotes, p.downvotes, p.comment_count
"""


def _duration(value: str) -> timedelta:
    """Parse a duration the way postkit's settings do (ISO 8601, e.g. ``PT15M``)."""
    return TypeAdapter(timedelta).validate_python(value)


class Config:
    """The few settings the baseline shares with postkit, read from ``POSTKIT_*`` variables."""

    def __init__(self) -> None:
        env = os.environ
        url = env.get("POSTKIT_DATABASE_URL") or env["DATABASE_URL"]
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.secret = env.get("POSTKIT_SECRET_KEY") or env["SECRET_KEY"]
        self.kid = hashlib.sha256(self.secret.encode()).hexdigest()[:16]
        self.issuer = env.get("POSTKIT_JWT_ISSUER", "postkit")
        self.audience = env.get("POSTKIT_JWT_AUDIENCE", "postkit")
        self.access_ttl = int(
            _duration(env.get("POSTKIT_ACCESS_TOKEN_TTL", "PT15M")).total_seconds()
        )
        self.refresh_ttl = timedelta(days=30)
        self.rounds = int(env.get("POSTKIT_BCRYPT_ROUNDS", "12"))
        self.max_failures = int(env.get("POSTKIT_LOGIN_MAX_FAILURES", "5"))
        self.failure_window = _duration(env.get("POSTKIT_LOGIN_FAILURE_WINDOW", "PT15M"))
        self.default_limit = int(env.get("POSTKIT_POSTS_DEFAULT_LIMIT", "10"))
        self.max_limit = int(env.get("POSTKIT_POSTS_MAX_LIMIT", "100"))
        self.pool_size = int(env.get("POSTKIT_DATABASE_POOL_SIZE", "10"))
        self.max_overflow = int(env.get("POSTKIT_DATABASE_MAX_OVERFLOW", "10"))


class State:
    config: Config
    pool: asyncpg.Pool
    passwords: CryptContext
    dummy_hash: str


state = State()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        to_json(body), status_code=status, headers=headers, media_type="application/json"
    )


def error(status: int, detail: str, code: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"detail": detail, "code": code}, status, headers)


UNAUTHENTICATED = ("Not authenticated", "NOT_AUTHENTICATED")
INVALID_TOKEN = ("Invalid or expired token", "INVALID_TOKEN")
BEARER = {"WWW-Authenticate": "Bearer"}


class Unauthorized(Exception):
    def __init__(self, detail: str, code: str) -> None:
        self.detail, self.code = detail, code


_VERIFIED: dict[str, tuple[int, int, str, float]] = {}
"""Verified tokens and their expiry, as postkit keeps them (``TokenCodec``): the next request
with the same token checks only ``exp``; the session is still checked in the database."""


def verified_claims(token: str) -> tuple[int, int, str]:
    """The user id, token version and session id of a valid token (signature checked once)."""
    remembered = _VERIFIED.get(token)
    if remembered is not None:
        user_id, version, session_id, expires = remembered
        if time.time() < expires + 30:
            return user_id, version, session_id
        del _VERIFIED[token]
        raise Unauthorized(*INVALID_TOKEN)
    config = state.config
    try:
        if jwt.get_unverified_header(token).get("kid") != config.kid:
            raise Unauthorized(*INVALID_TOKEN)
        claims = jwt.decode(
            token,
            config.secret,
            algorithms=["HS256"],
            audience=config.audience,
            issuer=config.issuer,
            leeway=30,
            options={"require": REQUIRED_CLAIMS},
        )
        user_id = int(claims["sub"])
        version = int(claims.get("ver", 0))
        expires = float(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise Unauthorized(*INVALID_TOKEN) from None
    session_id = claims.get("sid")
    if not isinstance(session_id, str):
        raise Unauthorized(*INVALID_TOKEN)
    if len(_VERIFIED) >= 4096:
        _VERIFIED.clear()
    _VERIFIED[token] = (user_id, version, session_id, expires)
    return user_id, version, session_id


async def authenticate(request: Request, connection: asyncpg.Connection) -> int:
    """Verify the bearer token and the user row behind it; return the user id."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(*UNAUTHENTICATED)
    user_id, version, session_id = verified_claims(token)
    row = await connection.fetchrow(
        """
        SELECT u.is_active, u.token_version, s.revoked_at IS NOT NULL AS revoked
        FROM postkit_users u JOIN postkit_auth_sessions s ON s.user_id = u.id
        WHERE u.id = $1 AND s.id = $2
        """,
        user_id,
        session_id,
    )
    if row is None or row["revoked"] or not row["is_active"] or row["token_version"] != version:
        raise Unauthorized(*INVALID_TOKEN)
    return user_id


def post_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "content": row["content"],
        "published": row["published"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "edited_at": row["edited_at"],
        "owner_id": row["owner_id"],
        "owner": {"id": row["owner_id"], "username": row["username"]},
        "score": row["vote_count"],
        "upvotes": row["upvotes"],
        "downvotes": row["downvotes"],
        "votes": row["vote_count"],
        "comment_count": row["comment_count"],
        "extra": {},
    }


def encode_cursor(created_at: datetime, post_id: int) -> str:
    raw = f"{created_at.isoformat()}|{post_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    padded = cursor + "=" * (-len(cursor) % 4)
    stamp, _, post_id = base64.urlsafe_b64decode(padded).decode().partition("|")
    return datetime.fromisoformat(stamp), int(post_id)


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_posts(request: Request) -> Response:
    params = request.query_params
    try:
        limit = int(params.get("limit", state.config.default_limit))
        skip = int(params.get("skip", 0))
    except ValueError:
        return error(422, "limit and skip must be integers", "VALIDATION_ERROR")
    if not 1 <= limit <= state.config.max_limit or skip < 0:
        return error(422, "limit or skip out of range", "VALIDATION_ERROR")
    search = params.get("search")
    cursor = params.get("cursor")
    async with state.pool.acquire() as connection:
        try:
            user_id = await authenticate(request, connection)
        except Unauthorized as exc:
            return error(401, exc.detail, exc.code, BEARER)
        conditions = ["(p.published OR p.owner_id = $1)"]
        args: list[Any] = [user_id]
        if search:
            args.append(f"%{escape_like(search)}%")
            n = len(args)
            conditions.append(
                f"(p.title ILIKE ${n} ESCAPE '\\' OR p.content ILIKE ${n} ESCAPE '\\')"
            )
        if cursor:
            try:
                after_at, after_id = decode_cursor(cursor)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return error(400, "Invalid cursor", "INVALID_CURSOR")
            args += [after_at, after_id]
            conditions.append(f"(p.created_at, p.id) < (${len(args) - 1}, ${len(args)})")
        args += [limit, skip]
        rows = await connection.fetch(
            f"""
            SELECT {POST_COLUMNS}
            FROM postkit_posts p JOIN postkit_users u ON u.id = p.owner_id
            WHERE {" AND ".join(conditions)}
            ORDER BY p.created_at DESC, p.id DESC
            LIMIT ${len(args) - 1} OFFSET ${len(args)}
            """,
            *args,
        )
    headers: dict[str, str] = {}
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = encode_cursor(last["created_at"], last["id"])
        query = {"limit": str(limit), "cursor": next_cursor}
        if search:
            query["search"] = search
        url = request.url.replace(query=urlencode(query))
        headers = {"Link": f'<{url}>; rel="next"', "X-Next-Cursor": next_cursor}
    return json_response([post_json(row) for row in rows], headers=headers)


def path_id(request: Request) -> int | None:
    try:
        value = int(request.path_params["post_id"])
    except ValueError:
        return None
    return value if 0 < value < 2**31 else None


POST_NOT_FOUND = (404, "Post not found", "POST_NOT_FOUND")


async def get_post(request: Request) -> Response:
    post_id = path_id(request)
    async with state.pool.acquire() as connection:
        try:
            user_id = await authenticate(request, connection)
        except Unauthorized as exc:
            return error(401, exc.detail, exc.code, BEARER)
        if post_id is None:
            return error(422, "post id must be an integer", "VALIDATION_ERROR")
        row = await connection.fetchrow(
            f"""
            SELECT {POST_COLUMNS}
            FROM postkit_posts p JOIN postkit_users u ON u.id = p.owner_id
            WHERE p.id = $1 AND (p.published OR p.owner_id = $2)
            """,
            post_id,
            user_id,
        )
    if row is None:
        return error(*POST_NOT_FOUND)
    return json_response(post_json(row))


async def _visible_post_for_update(
    connection: asyncpg.Connection, post_id: int, user_id: int
) -> asyncpg.Record | None:
    """The post's counters, its row locked until the commit; None if the user cannot see it."""
    row: asyncpg.Record | None = await connection.fetchrow(
        "SELECT vote_count, upvotes, downvotes, created_at FROM postkit_posts "
        "WHERE id = $1 AND (published OR owner_id = $2) FOR UPDATE",
        post_id,
        user_id,
    )
    return row


async def _store_counts(
    connection: asyncpg.Connection,
    post_id: int,
    post: asyncpg.Record,
    score: int,
    up: int,
    down: int,
) -> None:
    """Write the post's moved counters and the ranks computed from them (the row is locked)."""
    ranks = rank_scores(score=score, upvotes=up, downvotes=down, created_at=post["created_at"])
    await connection.execute(
        "UPDATE postkit_posts SET vote_count = $2, upvotes = $3, downvotes = $4, hot_rank = $5, "
        "best_rank = $6, controversial_rank = $7 WHERE id = $1",
        post_id,
        score,
        up,
        down,
        ranks["hot_rank"],
        ranks["best_rank"],
        ranks["controversial_rank"],
    )


async def put_vote(request: Request) -> Response:
    """Idempotent up-vote (the benchmark's PUT has no body): insert if absent and move the
    counters and ranks in the same transaction."""
    post_id = path_id(request)
    async with state.pool.acquire() as connection:
        try:
            user_id = await authenticate(request, connection)
        except Unauthorized as exc:
            return error(401, exc.detail, exc.code, BEARER)
        if post_id is None:
            return error(422, "post id must be an integer", "VALIDATION_ERROR")
        async with connection.transaction():
            post = await _visible_post_for_update(connection, post_id, user_id)
            if post is None:
                return error(*POST_NOT_FOUND)
            score, up, down = post["vote_count"], post["upvotes"], post["downvotes"]
            weight = await connection.fetchval(
                """
                INSERT INTO postkit_votes (user_id, post_id, weight, direction)
                VALUES ($1, $2, 1, 1) ON CONFLICT DO NOTHING RETURNING weight
                """,
                user_id,
                post_id,
            )
            if weight is not None:
                score, up = score + weight, up + 1
                await _store_counts(connection, post_id, post, score, up, down)
    body = {
        "post_id": post_id,
        "dir": 1,
        "score": score,
        "upvotes": up,
        "downvotes": down,
        "votes": score,
    }
    return json_response(body, 201 if weight is not None else 200)


async def delete_vote(request: Request) -> Response:
    """Idempotent unvote: delete if present and move the counters and ranks in the same
    transaction."""
    post_id = path_id(request)
    async with state.pool.acquire() as connection:
        try:
            user_id = await authenticate(request, connection)
        except Unauthorized as exc:
            return error(401, exc.detail, exc.code, BEARER)
        if post_id is None:
            return error(422, "post id must be an integer", "VALIDATION_ERROR")
        async with connection.transaction():
            post = await _visible_post_for_update(connection, post_id, user_id)
            if post is None:
                return error(*POST_NOT_FOUND)
            removed = await connection.fetchrow(
                "DELETE FROM postkit_votes WHERE user_id = $1 AND post_id = $2 "
                "RETURNING weight, direction",
                user_id,
                post_id,
            )
            if removed is not None:
                up_vote = removed["direction"] == 1
                await _store_counts(
                    connection,
                    post_id,
                    post,
                    post["vote_count"] - removed["weight"],
                    post["upvotes"] - up_vote,
                    post["downvotes"] - (not up_vote),
                )
    return Response(status_code=204)


def _throttle_keys(login: str, address: str) -> list[str]:
    return [
        hashlib.sha256(f"account:{login.strip().lower()}".encode()).hexdigest(),
        hashlib.sha256(f"ip:{address}".encode()).hexdigest(),
    ]


async def login(request: Request) -> Response:
    """Password login with the same race-proof throttle as postkit's, in fewer round trips.

    Reserve an attempt row per key (committed), count the other rows in the window, check the
    password off the loop; on success drop the reservations and the account's failures and open
    an auth session with its first refresh token.
    """
    form = await request.form()
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return error(422, "username and password are required", "VALIDATION_ERROR")
    config = state.config
    login_name = username.strip().lower()
    address = request.client.host if request.client else "unknown"
    keys = _throttle_keys(login_name, address)
    now = datetime.now(timezone.utc)
    cutoff = now - config.failure_window
    async with state.pool.acquire() as connection:
        await connection.execute(
            """
            DELETE FROM postkit_login_attempts WHERE id IN (
                SELECT id FROM postkit_login_attempts
                WHERE key = ANY($1::text[]) AND attempted_at <= $2 FOR UPDATE SKIP LOCKED)
            """,
            keys,
            cutoff,
        )
        reserved = [
            row["id"]
            for row in await connection.fetch(
                "INSERT INTO postkit_login_attempts (key, attempted_at) "
                "SELECT unnest($1::text[]), $2 RETURNING id",
                keys,
                now,
            )
        ]
        busiest = await connection.fetchval(
            """
            SELECT coalesce(max(n), 0) FROM (
                SELECT count(*) AS n FROM postkit_login_attempts
                WHERE key = ANY($1::text[]) AND attempted_at > $2 AND id <> ALL($3::int[])
                GROUP BY key) AS counts
            """,
            keys,
            cutoff,
            reserved,
        )
        if busiest >= config.max_failures:
            await connection.execute(
                "DELETE FROM postkit_login_attempts WHERE id = ANY($1::int[])", reserved
            )
            return error(
                429,
                "Too many failed login attempts; try again later",
                "TOO_MANY_ATTEMPTS",
                {"Retry-After": str(int(config.failure_window.total_seconds()))},
            )
        column = "email" if "@" in login_name else "username"
        user = await connection.fetchrow(
            "SELECT id, password_hash, is_active, token_version FROM postkit_users "
            f"WHERE {column} = $1",
            login_name,
        )
    target = user["password_hash"] if user is not None else state.dummy_hash
    loop = asyncio.get_running_loop()
    matches, _ = await loop.run_in_executor(
        None, state.passwords.verify_and_update, password, target
    )
    if user is None or not matches or not user["is_active"]:
        return error(401, "Incorrect email/username or password", "INVALID_CREDENTIALS", BEARER)
    session_id = secrets.token_urlsafe(24)
    refresh_token = secrets.token_urlsafe(32)
    async with state.pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "DELETE FROM postkit_login_attempts WHERE id = ANY($1::int[]) OR key = $2",
            reserved,
            keys[0],
        )
        await connection.execute(
            "INSERT INTO postkit_auth_sessions (id, user_id, created_at) VALUES ($1, $2, $3)",
            session_id,
            user["id"],
            now,
        )
        await connection.execute(
            "INSERT INTO postkit_refresh_tokens (token_hash, session_id, created_at, expires_at) "
            "VALUES ($1, $2, $3, $4)",
            hashlib.sha256(refresh_token.encode()).hexdigest(),
            session_id,
            now,
            now + config.refresh_ttl,
        )
    claims = {
        "sub": str(user["id"]),
        "iat": now,
        "exp": now + timedelta(seconds=config.access_ttl),
        "iss": config.issuer,
        "aud": config.audience,
        "jti": uuid.uuid4().hex,
        "ver": user["token_version"],
        "sid": session_id,
    }
    token = jwt.encode(claims, config.secret, algorithm="HS256", headers={"kid": config.kid})
    return json_response(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": config.access_ttl,
            "refresh_token": refresh_token,
        }
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    config = Config()
    state.config = config
    state.passwords = CryptContext(
        schemes=["bcrypt_sha256", "bcrypt"],
        deprecated="auto",
        bcrypt_sha256__rounds=config.rounds,
        bcrypt__rounds=config.rounds,
    )
    state.dummy_hash = state.passwords.hash(secrets.token_urlsafe(24))
    state.pool = await asyncpg.create_pool(
        config.dsn, min_size=config.pool_size, max_size=config.pool_size + config.max_overflow
    )
    # The same garbage-collector tuning as the reference app, so both are served alike.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        await state.pool.close()


app = Starlette(
    routes=[
        Route("/posts", list_posts, methods=["GET"]),
        Route("/posts/{post_id}", get_post, methods=["GET"]),
        Route("/posts/{post_id}/vote", put_vote, methods=["PUT"]),
        Route("/posts/{post_id}/vote", delete_vote, methods=["DELETE"]),
        Route("/login", login, methods=["POST"]),
    ],
    lifespan=lifespan,
)
