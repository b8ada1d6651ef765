"""The benchmark harness: the two servers, the loads wrk drives against them, the measurements,
and EXPLAIN of postkit's own hot queries. ``run.py`` puts it together; ``report.py`` renders it.

Servers start on free loopback ports and always stop, through the test suite's own helpers
(``tests/support``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
from seed import BENCH_PASSWORD, BENCH_USERNAME, Scale, search_word
from wrk import Load, Wrk, WrkResult

from tests.support.ports import free_port
from tests.support.servers import LiveProcess, live_process

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
REFERENCE_APP = ROOT / "examples" / "socialapp"
ENDPOINTS = ["feed", "search", "cursor", "post", "vote", "login"]
SQLITE_ENDPOINTS = ["feed", "search", "cursor", "post", "vote"]
"""What the SQLite run measures (login is bcrypt-bound, the same on either database)."""


# --- Servers ------------------------------------------------------------------------------------


@dataclass
class ServerSpec:
    name: str
    args: list[str]
    cwd: Path


def server_specs(app: str) -> dict[str, ServerSpec]:
    uvicorn = [sys.executable, "-m", "uvicorn", "--workers", "1", "--no-access-log"]
    uvicorn += ["--log-level", "warning"]
    if app == "reference" and (REFERENCE_APP / "app" / "main.py").exists():
        postkit = ServerSpec("postkit", [*uvicorn, "app.main:app"], REFERENCE_APP)
    else:
        postkit = ServerSpec(
            "postkit",
            [*uvicorn, "--factory", "--app-dir", str(BENCH_DIR), "postkit_app:create_app"],
            ROOT,
        )
    baseline = ServerSpec(
        "baseline", [*uvicorn, "--app-dir", str(BENCH_DIR), "baseline_app:app"], ROOT
    )
    return {"postkit": postkit, "baseline": baseline}


def server_environment(database_url: str, secret: str, bcrypt_rounds: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # The reference app's own names ...
            "DATABASE_URL": database_url,
            "SECRET_KEY": secret,
            "BCRYPT_ROUNDS": str(bcrypt_rounds),
            "LOG_LEVEL": "warning",
            "ENVIRONMENT": "production",
            # The database is migrated by postkit's own history (seed.py); the app's composed
            # history would try to create postkit's tables again, and its own bookmarks table
            # is not on any benchmarked path.
            "MIGRATE_ON_STARTUP": "false",
            # ... and postkit's (the fallback app and the baseline read these).
            "POSTKIT_DATABASE_URL": database_url,
            "POSTKIT_SECRET_KEY": secret,
            "POSTKIT_BCRYPT_ROUNDS": str(bcrypt_rounds),
            "POSTKIT_ACCESS_TOKEN_TTL": "PT2H",
            "POSTKIT_DISCOVER_PLUGINS": "false",
            # Every login comes from 127.0.0.1 at 32 connections: lift the throttle (both servers
            # still do its bookkeeping) so the login runs measure logins, not 429s.
            "POSTKIT_LOGIN_MAX_FAILURES": "1000000",
            # One client drives every load: the rate limits would measure 429s, not the routes.
            "POSTKIT_RATE_LIMITS_ENABLED": "false",
            # 20 connections kept open by both servers (asyncpg's pool keeps what it opened up
            # to max_size; SQLAlchemy's closes overflow connections on return, which under
            # sustained load would reconnect, and re-prepare every statement, all the time).
            "DATABASE_POOL_SIZE": "20",
            "POSTKIT_DATABASE_POOL_SIZE": "20",
            "POSTKIT_DATABASE_MAX_OVERFLOW": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class Server:
    """One server process on a free loopback port (see ``running``)."""

    def __init__(self, spec: ServerSpec, live: LiveProcess, port: int) -> None:
        self.spec = spec
        self.live = live
        self.process = live.process
        self.port = port
        self.url = live.url
        self.log_path = live.log_path

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll until the server answers an anonymous feed request with 401."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.live.wait_http(f"{self.url}/posts", timeout=timeout).status_code == 401:
                    return
            except AssertionError as exc:  # exited, or never answered
                raise RuntimeError(f"{self.spec.name}: {str(exc)[-3000:]}") from None
            time.sleep(0.2)
        raise RuntimeError(f"{self.spec.name} did not start:\n{self.live.log[-3000:]}")

    def peak_rss_mib(self) -> float:
        """The process's resident-set high-water mark (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """CPU seconds the process has used so far: user + system time of all its threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the server has worked off what the last load left queued (logins)."""
        deadline = time.monotonic() + timeout
        previous = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.cpu_seconds()
            if current - previous < 0.05:
                return
            previous = current


@contextlib.contextmanager
def running(spec: ServerSpec, env: dict[str, str], log_dir: Path) -> Iterator[Server]:
    """Serve ``spec`` on a free port until the block ends (then SIGTERM, SIGKILL if need be)."""
    port = free_port()
    argv = [*spec.args, "--host", "127.0.0.1", "--port", str(port)]
    log = log_dir / f"{spec.name}-{port}.log"
    url = f"http://127.0.0.1:{port}"
    with live_process(argv, cwd=spec.cwd, env=env, log=log, url=url) as live:
        server = Server(spec, live, port)
        server.wait_ready()
        yield server


def login(server: Server, username: str = BENCH_USERNAME) -> str:
    response = httpx.post(
        f"{server.url}/login",
        data={"username": username, "password": BENCH_PASSWORD},
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(
            f"{server.spec.name}: login failed {response.status_code} {response.text}"
        )
    token: str = response.json()["access_token"]
    return token


def next_cursor(server: Server, token: str) -> str:
    response = httpx.get(
        f"{server.url}/posts",
        params={"limit": 10},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    response.raise_for_status()
    cursor = response.headers.get("x-next-cursor")
    if not cursor:
        raise RuntimeError(f"{server.spec.name}: no X-Next-Cursor on the first feed page")
    return cursor


# --- The measurements ---------------------------------------------------------------------------


@dataclass
class Options:
    scale: Scale
    duration: float
    rounds: int
    connections: int
    threads: int
    storm_connections: int
    warmup: float
    bcrypt_rounds: int
    postgres_url: str
    database: str
    app: str
    endpoints: list[str]
    write: bool
    json_path: Path | None
    sqlite: bool = True


@dataclass
class Results:
    # results[server][endpoint] -> one WrkResult per round
    endpoints: dict[str, dict[str, list[WrkResult]]] = field(default_factory=dict)
    feed_low_votes: dict[str, list[WrkResult]] = field(default_factory=dict)
    storm_post: dict[str, list[WrkResult]] = field(default_factory=dict)
    storm_login: dict[str, list[WrkResult]] = field(default_factory=dict)
    quiet_post: dict[str, list[WrkResult]] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    # The postkit reference app on a SQLite file: sqlite[endpoint] -> one WrkResult per round.
    sqlite: dict[str, list[WrkResult]] = field(default_factory=dict)
    sqlite_peak_rss_mib: float = 0.0
    sqlite_wrong_vote_counts: int = 0
    sqlite_seed_seconds: float = float("nan")
    explain: list[dict[str, Any]] = field(default_factory=list)
    shape_problems: list[str] = field(default_factory=list)
    wrong_vote_counts: int = 0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    started: str = ""
    seconds: float = 0.0


def endpoint_load(endpoint: str, options: Options, token: str, cursor: str) -> Load:
    posts = options.scale.posts
    c, t, d = options.connections, options.threads, options.duration
    if endpoint == "feed":
        return Load("get", [token, "/posts?limit=10"], c, t, d)
    if endpoint == "search":
        return Load("get", [token, f"/posts?limit=10&search={search_word()}"], c, t, d)
    if endpoint == "cursor":
        return Load("get", [token, f"/posts?limit=10&cursor={quote(cursor, safe='')}"], c, t, d)
    if endpoint == "post":
        return Load("get", [token, "/posts/{n}", "1", str(posts)], c, t, d)
    if endpoint == "vote":
        return Load("vote", [token, "1", str(posts)], c, t, d)
    if endpoint == "login":
        return Load("login", [BENCH_PASSWORD, str(options.scale.users)], c, t, d)
    raise ValueError(endpoint)


VOTE_COUNT_CHECK = """
    SELECT count(*) FROM postkit_posts p
    LEFT JOIN (SELECT post_id, sum(weight) AS total,
                      sum(CASE WHEN direction = 1 THEN 1 ELSE 0 END) AS up,
                      sum(CASE WHEN direction = -1 THEN 1 ELSE 0 END) AS down
               FROM postkit_votes GROUP BY post_id) v
      ON v.post_id = p.id
    WHERE p.vote_count <> coalesce(v.total, 0) OR p.upvotes <> coalesce(v.up, 0)
       OR p.downvotes <> coalesce(v.down, 0)
"""
"""Counts the posts whose score, up- or down-vote count differs from a recount of their votes
(both databases)."""


async def _clear_bench_votes(url: str) -> None:
    """Undo what the vote benchmark left behind (the bench user's votes), keeping the counters
    exact (the ranks of those posts keep the values of their last vote)."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(
                """
                WITH gone AS (
                    DELETE FROM postkit_votes
                    WHERE user_id = (SELECT id FROM postkit_users WHERE username = $1)
                    RETURNING post_id, weight, direction
                )
                UPDATE postkit_posts AS p SET vote_count = p.vote_count - g.total,
                    upvotes = p.upvotes - g.up, downvotes = p.downvotes - g.down
                FROM (SELECT post_id, sum(weight) AS total,
                             count(*) FILTER (WHERE direction = 1) AS up,
                             count(*) FILTER (WHERE direction = -1) AS down
                      FROM gone GROUP BY post_id) AS g
                WHERE p.id = g.post_id
                """,
                BENCH_USERNAME,
            )
    finally:
        await connection.close()


async def _check_vote_counts(url: str) -> int:
    """How many posts have a ``vote_count`` (or ``upvotes``/``downvotes``) that differs from a
    recount of their votes."""
    connection = await asyncpg.connect(url)
    try:
        wrong: int = await connection.fetchval(VOTE_COUNT_CHECK)
        return wrong
    finally:
        await connection.close()


def clear_bench_votes_sqlite(path: Path) -> None:
    """``_clear_bench_votes`` on the SQLite file: the bench user's votes go, counts stay exact."""
    connection = sqlite3.connect(path, timeout=30)
    try:
        with connection:
            (user_id,) = connection.execute(
                "SELECT id FROM postkit_users WHERE username = ?", (BENCH_USERNAME,)
            ).fetchone()
            connection.execute(
                """
                UPDATE postkit_posts SET
                    vote_count = vote_count - (
                        SELECT sum(weight) FROM postkit_votes
                        WHERE user_id = :user AND post_id = postkit_posts.id),
                    upvotes = upvotes - (
                        SELECT count(*) FROM postkit_votes
                        WHERE user_id = :user AND post_id = postkit_posts.id AND direction = 1),
                    downvotes = downvotes - (
                        SELECT count(*) FROM postkit_votes
                        WHERE user_id = :user AND post_id = postkit_posts.id AND direction = -1)
                WHERE id IN (SELECT post_id FROM postkit_votes WHERE user_id = :user)
                """,
                {"user": user_id},
            )
            connection.execute("DELETE FROM postkit_votes WHERE user_id = ?", (user_id,))
    finally:
        connection.close()


def check_vote_counts_sqlite(path: Path) -> int:
    """``_check_vote_counts`` on the SQLite file."""
    connection = sqlite3.connect(path, timeout=30)
    try:
        wrong: int = connection.execute(VOTE_COUNT_CHECK).fetchone()[0]
        return wrong
    finally:
        connection.close()


def compare_shapes(servers: dict[str, Server], tokens: dict[str, str]) -> list[str]:
    """Check that both servers answer the same JSON for the same requests (the baseline is fair)."""
    problems = []
    for path in ["/posts?limit=10", f"/posts?limit=3&search={search_word()}", "/posts/1"]:
        bodies = {}
        for name, server in servers.items():
            response = httpx.get(
                server.url + path, headers={"Authorization": f"Bearer {tokens[name]}"}, timeout=10
            )
            bodies[name] = (response.status_code, response.json())
        if bodies["postkit"] != bodies["baseline"]:
            problems.append(
                f"{path}: postkit {bodies['postkit']!r:.300} "
                f"!= baseline {bodies['baseline']!r:.300}"
            )
    return problems


def measure_server(
    name: str,
    spec: ServerSpec,
    env: dict[str, str],
    options: Options,
    wrk: Wrk,
    results: Results,
    log_dir: Path,
    database_url: str,
) -> None:
    with running(spec, env, log_dir) as server:
        token, cursor = _warm_up(server, options, wrk)
        measure_endpoints(
            name,
            server,
            options.endpoints,
            options,
            wrk,
            results.endpoints.setdefault(name, {}),
            token,
            cursor,
            after_vote=lambda: asyncio.run(_clear_bench_votes(database_url)),
        )
        # Single-post p99 without, then with, a login storm running beside it.
        post = endpoint_load("post", options, token, cursor)
        quiet = wrk.run(server.url, post, server.cpu_seconds)
        storm = Load(
            "login",
            [BENCH_PASSWORD, str(options.scale.users)],
            options.storm_connections,
            1,
            options.duration + 2,  # covers the whole single-post run
        )
        server.wait_idle()
        stormy, logins = wrk.run_pair(server.url, post, storm, server.cpu_seconds)
        results.quiet_post.setdefault(name, []).append(quiet)
        results.storm_post.setdefault(name, []).append(stormy)
        results.storm_login.setdefault(name, []).append(logins)
        print(
            f"  {name:8} storm   single-post p99 {quiet.p99_ms:.1f} ms alone, "
            f"{stormy.p99_ms:.1f} ms during {logins.rps:.1f} logins/s",
            flush=True,
        )
        rss = server.peak_rss_mib()
        results.peak_rss_mib[name] = max(results.peak_rss_mib.get(name, 0.0), rss)


def _warm_up(server: Server, options: Options, wrk: Wrk) -> tuple[str, str]:
    """Log in, find the second feed page, and warm the single-post and feed paths up."""
    token = login(server)
    cursor = next_cursor(server, token)
    c, t, warmup = options.connections, options.threads, options.warmup
    single = [token, "/posts/{n}", "1", str(options.scale.posts)]
    wrk.run(server.url, Load("get", single, c, t, warmup))
    wrk.run(server.url, Load("get", [token, "/posts?limit=10"], c, t, warmup))
    return token, cursor


def measure_endpoints(
    name: str,
    server: Server,
    endpoints: list[str],
    options: Options,
    wrk: Wrk,
    target: dict[str, list[WrkResult]],
    token: str,
    cursor: str,
    *,
    after_vote: Callable[[], None],
) -> None:
    """One wrk run per endpoint, with the server's CPU time; ``after_vote`` undoes the votes."""
    for endpoint in endpoints:
        result = wrk.run(
            server.url, endpoint_load(endpoint, options, token, cursor), server.cpu_seconds
        )
        target.setdefault(endpoint, []).append(result)
        print(
            f"  {name:8} {endpoint:7} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.1f} ms  "
            f"p99 {result.p99_ms:7.1f} ms  CPU {result.cpu_ms_per_request:6.3f} ms/req  "
            f"non-2xx {result.non_2xx}  errors {result.socket_errors}",
            flush=True,
        )
        server.wait_idle()
        if endpoint == "vote":
            after_vote()


def measure_sqlite(
    spec: ServerSpec,
    env: dict[str, str],
    options: Options,
    wrk: Wrk,
    results: Results,
    log_dir: Path,
    path: Path,
) -> None:
    """postkit's app on the SQLite file ``path``: the endpoints SQLite runs, and no baseline."""
    with running(spec, env, log_dir) as server:
        token, cursor = _warm_up(server, options, wrk)
        measure_endpoints(
            "sqlite",
            server,
            [e for e in options.endpoints if e in SQLITE_ENDPOINTS],
            options,
            wrk,
            results.sqlite,
            token,
            cursor,
            after_vote=lambda: clear_bench_votes_sqlite(path),
        )
        results.sqlite_peak_rss_mib = max(results.sqlite_peak_rss_mib, server.peak_rss_mib())


def measure_feed_only(
    name: str,
    spec: ServerSpec,
    env: dict[str, str],
    options: Options,
    wrk: Wrk,
    target: dict[str, list[WrkResult]],
    log_dir: Path,
) -> None:
    with running(spec, env, log_dir) as server:
        token = login(server)
        feed = Load(
            "get",
            [token, "/posts?limit=10"],
            options.connections,
            options.threads,
            options.duration,
        )
        wrk.run(server.url, Load("get", feed.args, feed.connections, feed.threads, options.warmup))
        result = wrk.run(server.url, feed, server.cpu_seconds)
        target.setdefault(name, []).append(result)
        print(
            f"  {name:8} feed    {result.rps:8.1f} req/s  p99 {result.p99_ms:7.1f} ms", flush=True
        )


# --- EXPLAIN of postkit's own queries -----------------------------------------------------------


def explain_hot_queries(database_url: str, secret: str, bcrypt_rounds: int) -> list[dict[str, Any]]:
    """Run the hot requests in-process, capture the SQL postkit sends, and EXPLAIN each SELECT."""
    return asyncio.run(_explain(database_url, secret, bcrypt_rounds))


async def _explain(database_url: str, secret: str, bcrypt_rounds: int) -> list[dict[str, Any]]:
    from fastapi import FastAPI
    from sqlalchemy import event

    from postkit import PostKit, PostKitSettings

    settings = PostKitSettings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        secret_key=secret,
        bcrypt_rounds=bcrypt_rounds,
        discover_plugins=False,
    )
    kit = PostKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router)
    captured: list[tuple[str, Any]] = []

    def capture(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        captured.append((statement, parameters))

    event.listen(kit.db.engine.sync_engine, "before_cursor_execute", capture)
    out: list[dict[str, Any]] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client,
    ):
        token = (
            await client.post(
                "/login", data={"username": BENCH_USERNAME, "password": BENCH_PASSWORD}
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        first = await client.get("/posts", params={"limit": 10}, headers=headers)
        cursor = first.headers.get("x-next-cursor", "")
        requests = {
            "feed": ("/posts", {"limit": 10}),
            "search": ("/posts", {"limit": 10, "search": search_word()}),
            "cursor": ("/posts", {"limit": 10, "cursor": cursor}),
            "post": ("/posts/12345", {}),
        }
        async with kit.db.engine.connect() as connection:
            for name, (path, params) in requests.items():
                captured.clear()
                await client.get(path, params=params, headers=headers)
                for statement, parameters in list(captured):
                    if not statement.lstrip().upper().startswith("SELECT"):
                        continue
                    plan = (
                        await connection.exec_driver_sql(
                            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
                        )
                    ).scalar_one()
                    root = (plan if isinstance(plan, list) else json.loads(plan))[0]
                    nodes = list(_plan_nodes(root["Plan"]))
                    scanned = {n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"}
                    sizes = {
                        name: int(
                            (
                                await connection.exec_driver_sql(
                                    "SELECT reltuples FROM pg_class WHERE relname = $1", (name,)
                                )
                            ).scalar_one()
                        )
                        for name in scanned
                    }
                    out.append(
                        {
                            "request": name,
                            "tables": sorted(
                                {n["Relation Name"] for n in nodes if "Relation Name" in n}
                            ),
                            "seq_scans": sorted(
                                f"{name} (~{sizes[name]:,} rows)" for name in scanned
                            ),
                            "nodes": sorted(
                                {
                                    f"{n['Node Type']}"
                                    + (f" using {n['Index Name']}" if "Index Name" in n else "")
                                    for n in nodes
                                    if "Scan" in n["Node Type"]
                                }
                            ),
                            "ms": root.get("Execution Time", 0.0),
                        }
                    )
    return out


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)
