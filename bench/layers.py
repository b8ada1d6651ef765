"""What each layer costs on one request: CPU time per ``GET /posts/{id}``, in process.

The same read (token check and post, in one statement on the driver connection, the same
JSON) is served four ways, each called straight through ASGI (no sockets, no HTTP parsing) so
that only the layers differ:

1. ``postkit``: the reference app's route, as deployed (FastAPI routing through the included
   routers, postkit's route class, the dependency that checks the token);
2. ``fastapi-no-deps``: one FastAPI route on a bare app that builds the reader itself and
   calls the same service method (no dependency injection, no nested routers);
3. ``starlette``: the same call in a plain Starlette route (no FastAPI at all);
4. ``service``: the service call alone, no web framework.

Run it against a database the benchmark seeded::

    python bench/layers.py --database-url postgresql+asyncpg://postgres@127.0.0.1/postkit_bench

Each figure is the best of several rounds (the machine may be shared: the minimum is the
steadiest estimate of the cost itself).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "examples" / "socialapp"))

Call = Callable[[], Awaitable[Any]]


def asgi_get(app: Any, path: str, token: str) -> Call:
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
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call() -> int:
        status, body = 0, b""

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                body += message.get("body", b"")

        await app(dict(scope), receive, send)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")
        return status

    return call


async def cpu_per_call(call: Call, requests: int, rounds: int, concurrency: int = 8) -> float:
    """The best, over ``rounds``, of the process CPU time per call (ms), ``concurrency`` at once."""
    for _ in range(100):
        await call()

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        best = min(best, (time.process_time() - started) / requests * 1000)
    return best


async def measure(database_url: str, post_id: int, requests: int, rounds: int) -> dict[str, float]:
    from app.main import create_app
    from app.settings import AppSettings
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Route

    from bench.seed import BENCH_PASSWORD, BENCH_USERNAME
    from postkit.routers.common import json_response
    from postkit.services.sessions import ReadAccess

    app = create_app(AppSettings(database_url=database_url, migrate_on_startup=False))
    kit = app.state.kit
    figures: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        async with kit.db.sessionmaker() as session:
            user = await kit.accounts.find_by_login(session, login=BENCH_USERNAME)
            assert user is not None, "seed the database with bench/run.py first"
            issued = await kit.sessions.start(session, user=user)
        token = issued.access_token
        assert BENCH_PASSWORD  # the seeded account; logged in directly above

        async def read(token: str) -> Any:
            reader = ReadAccess(kit.db.reads, kit.sessions, kit.sessions.verify(token))
            return await kit.posts.get_for(reader, post_id=post_id)

        def bearer(request: Request) -> str:
            return request.headers["authorization"].partition(" ")[2]

        bare_fastapi = FastAPI()

        @bare_fastapi.get("/posts/{post_id}")
        async def fastapi_route(request: Request) -> Response:
            return json_response(await read(bearer(request)))

        async def starlette_route(request: Request) -> Response:
            return json_response(await read(bearer(request)))

        bare_starlette = Starlette(routes=[Route("/posts/{post_id}", starlette_route)])
        path = f"/posts/{post_id}"
        variants: dict[str, Call] = {
            "postkit": asgi_get(app, path, token),
            "fastapi-no-deps": asgi_get(bare_fastapi, path, token),
            "starlette": asgi_get(bare_starlette, path, token),
            "service": lambda: read(token),
        }
        for name, call in variants.items():
            figures[name] = await cpu_per_call(call, requests, rounds)
            print(f"  {name:16} {figures[name]:.3f} ms CPU per request", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "POSTKIT_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1/postkit_bench"
        ),
    )
    parser.add_argument("--post-id", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args(argv)
    os.environ.setdefault("POSTKIT_RATE_LIMITS_ENABLED", "false")
    os.environ.setdefault("POSTKIT_ACCESS_TOKEN_TTL", "PT2H")
    sys.path.insert(0, str(ROOT))
    import uvloop

    figures = uvloop.run(
        measure(options.database_url, options.post_id, options.requests, options.rounds)
    )
    base = figures["service"]
    print()
    print("| layer | CPU ms per request | added by the layer |")
    print("|---|---:|---:|")
    order = ["service", "starlette", "fastapi-no-deps", "postkit"]
    for previous, name in zip([None, *order], order, strict=False):
        added = figures[name] - (figures[previous] if previous else 0.0)
        print(f"| {name} | {figures[name]:.3f} | {added:+.3f} |")
    print(f"\npostkit's route costs {figures['postkit'] / base:.1f}x the service call alone.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
