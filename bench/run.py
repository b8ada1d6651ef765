"""postkit against a hand-written baseline, side by side, on one PostgreSQL database.

    python bench/run.py                       # reference scale: 10k users, 100k posts, 1M votes
    python bench/run.py --scale small --duration 3 --rounds 1 --no-write   # a quick look

It seeds a fresh database through postkit's migrations (``bench/seed.py``), then serves, in turn
and on loopback, the reference app (``examples/socialapp`` under uvicorn, one worker) and the
baseline (``bench/baseline_app.py``), and drives each with wrk at 32 connections, back to back,
for several rounds. It prints requests/s, p50 and p99 per endpoint for both and the ratio, the
feed's p99 at a low and at the full vote count, the single-post p99 during a login storm, the
servers' peak RSS, and EXPLAIN summaries of postkit's own hot queries; and it writes the results
into ``docs/benchmarks.md`` between the ``bench:results`` markers.

Needs wrk (``apt-get install wrk``) and a PostgreSQL server whose user may create databases
(``--postgres-url``, default ``$POSTKIT_BENCH_POSTGRES_URL``, ``$POSTKIT_TEST_POSTGRES_URL`` or
``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from seed import (  # noqa: E402
    BENCH_PASSWORD,
    BENCH_USERNAME,
    DEFAULT_DATABASE,
    DEFAULT_SERVER_URL,
    SCALES,
    Scale,
    add_votes,
    search_word,
    seed,
)

WRK_DIR = BENCH_DIR / "wrk"
REFERENCE_APP = ROOT / "examples" / "socialapp"
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS_START = "<!-- bench:results:start -->"
RESULTS_END = "<!-- bench:results:end -->"
ENDPOINTS = ["feed", "search", "cursor", "post", "vote", "login"]
LABELS = {
    "feed": "GET /posts?limit=10",
    "search": "GET /posts?limit=10&search=…",
    "cursor": "GET /posts?limit=10&cursor=… (page 2)",
    "post": "GET /posts/{id}",
    "vote": "PUT then DELETE /posts/{id}/vote",
    "login": "POST /login (bcrypt)",
}
THROUGHPUT_TARGETS = {"feed", "search", "post"}


# --- Servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class Server:
    """One server process on a free loopback port, stopped on exit."""

    def __init__(self, spec: ServerSpec, env: dict[str, str], log_dir: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{spec.name}-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*spec.args, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=spec.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/posts", timeout=2).status_code == 401:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.spec.name} did not start:\n{self.log_path.read_text()[-3000:]}")

    def peak_rss_mib(self) -> float:
        """The process's resident-set high-water mark (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


@contextlib.contextmanager
def running(spec: ServerSpec, env: dict[str, str], log_dir: Path) -> Iterator[Server]:
    server = Server(spec, env, log_dir)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


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


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @classmethod
    def parse(cls, output: str) -> WrkResult:
        for line in output.splitlines():
            if line.startswith("BENCH_RESULT "):
                data = json.loads(line.removeprefix("BENCH_RESULT "))
                return cls(
                    requests=data["requests"],
                    seconds=data["duration_us"] / 1e6,
                    p50_ms=data["p50_us"] / 1000,
                    p90_ms=data["p90_us"] / 1000,
                    p99_ms=data["p99_us"] / 1000,
                    max_ms=data["max_us"] / 1000,
                    non_2xx=data["non_2xx"],
                    socket_errors=data["connect_errors"]
                    + data["read_errors"]
                    + data["write_errors"]
                    + data["timeouts"],
                )
        raise RuntimeError(f"wrk printed no result:\n{output}")


@dataclass
class Load:
    """One wrk invocation: a script, its arguments, and the load shape."""

    script: str
    args: list[str]
    connections: int
    threads: int
    duration: float


def _script_path(name: str, cache: dict[str, Path], tmp: Path) -> Path:
    if name not in cache:
        combined = tmp / f"{name}.lua"
        combined.write_text(
            (WRK_DIR / "common.lua").read_text() + "\n" + (WRK_DIR / f"{name}.lua").read_text()
        )
        cache[name] = combined
    return cache[name]


class Wrk:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._scripts: dict[str, Path] = {}
        if shutil.which("wrk") is None:
            raise SystemExit("bench: wrk is missing; install it with `apt-get install -y wrk`")

    def command(self, url: str, load: Load) -> list[str]:
        script = _script_path(load.script, self._scripts, self.tmp)
        return [
            "wrk",
            f"-t{load.threads}",
            f"-c{load.connections}",
            f"-d{max(1, round(load.duration))}s",  # wrk takes whole seconds
            "--timeout",
            "30s",
            "-s",
            str(script),
            url,
            "--",
            *load.args,
        ]

    def run(self, url: str, load: Load) -> WrkResult:
        completed = subprocess.run(
            self.command(url, load),
            capture_output=True,
            text=True,
            timeout=load.duration + 60,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"wrk failed: {completed.stderr}\n{completed.stdout}")
        return WrkResult.parse(completed.stdout)

    def run_pair(self, url: str, main: Load, side: Load) -> tuple[WrkResult, WrkResult]:
        """Run two loads at once (the single-post load during a login storm)."""
        first = subprocess.Popen(
            self.command(url, side), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            time.sleep(1.0)  # let the side load get going first
            main_result = self.run(url, main)
            out, err = first.communicate(timeout=side.duration + 60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        return main_result, WrkResult.parse(out + err)


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


@dataclass
class Results:
    # results[server][endpoint] -> one WrkResult per round
    endpoints: dict[str, dict[str, list[WrkResult]]] = field(default_factory=dict)
    feed_low_votes: dict[str, list[WrkResult]] = field(default_factory=dict)
    storm_post: dict[str, list[WrkResult]] = field(default_factory=dict)
    storm_login: dict[str, list[WrkResult]] = field(default_factory=dict)
    quiet_post: dict[str, list[WrkResult]] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
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


async def _clear_bench_votes(url: str) -> None:
    """Undo what the vote benchmark left behind (the bench user's votes), keeping counts exact."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(
                """
                WITH gone AS (
                    DELETE FROM postkit_votes
                    WHERE user_id = (SELECT id FROM postkit_users WHERE username = $1)
                    RETURNING post_id, weight
                )
                UPDATE postkit_posts AS p SET vote_count = p.vote_count - g.total
                FROM (SELECT post_id, sum(weight) AS total FROM gone GROUP BY post_id) AS g
                WHERE p.id = g.post_id
                """,
                BENCH_USERNAME,
            )
    finally:
        await connection.close()


async def _check_vote_counts(url: str) -> int:
    """How many posts have a ``vote_count`` that differs from the sum of their votes."""
    connection = await asyncpg.connect(url)
    try:
        wrong: int = await connection.fetchval(
            """
            SELECT count(*) FROM postkit_posts p
            LEFT JOIN (SELECT post_id, sum(weight) AS total FROM postkit_votes GROUP BY post_id) v
              ON v.post_id = p.id
            WHERE p.vote_count <> coalesce(v.total, 0)
            """
        )
        return wrong
    finally:
        await connection.close()


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
        token = login(server)
        cursor = next_cursor(server, token)
        warm = Load(
            "get",
            [token, "/posts/{n}", "1", str(options.scale.posts)],
            options.connections,
            options.threads,
            options.warmup,
        )
        wrk.run(server.url, warm)
        wrk.run(
            server.url,
            Load(
                "get",
                [token, "/posts?limit=10"],
                options.connections,
                options.threads,
                options.warmup,
            ),
        )
        for endpoint in options.endpoints:
            result = wrk.run(server.url, endpoint_load(endpoint, options, token, cursor))
            results.endpoints.setdefault(name, {}).setdefault(endpoint, []).append(result)
            print(
                f"  {name:8} {endpoint:7} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.1f} ms  "
                f"p99 {result.p99_ms:7.1f} ms  non-2xx {result.non_2xx}  "
                f"errors {result.socket_errors}",
                flush=True,
            )
            server.wait_idle()
            if endpoint == "vote":
                asyncio.run(_clear_bench_votes(database_url))
        # Single-post p99 without, then with, a login storm running beside it.
        post = endpoint_load("post", options, token, cursor)
        quiet = wrk.run(server.url, post)
        storm = Load(
            "login",
            [BENCH_PASSWORD, str(options.scale.users)],
            options.storm_connections,
            1,
            options.duration + 2,  # covers the whole single-post run
        )
        server.wait_idle()
        stormy, logins = wrk.run_pair(server.url, post, storm)
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
        result = wrk.run(server.url, feed)
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


# --- Reporting ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in [
        "postkit",
        "fastapi",
        "starlette",
        "pydantic",
        "sqlalchemy",
        "asyncpg",
        "uvicorn",
        "uvloop",
        "httptools",
        "pyjwt",
        "libpass",
        "bcrypt",
    ]:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    found["wrk"] = (
        (wrk_version.stdout + wrk_version.stderr).split()[1]
        if wrk_version.stdout + wrk_version.stderr
        else "-"
    )
    return found


async def postgres_version(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        version: str = await connection.fetchval("SHOW server_version")
        return version
    finally:
        await connection.close()


def machine() -> str:
    cores = os.cpu_count()
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return f"{cores} cores ({model}), {memory} RAM, {platform.system()} {platform.release()}"


def render(results: Results, options: Options, database_url: str, command: str) -> str:
    lines: list[str] = []
    add = lines.append
    pk = results.endpoints.get("postkit", {})
    bl = results.endpoints.get("baseline", {})
    add(
        f"Run of {results.started} ({results.seconds / 60:.0f} min): "
        f"scale **{options.scale.name}** ({options.scale.users:,} users, "
        f"{options.scale.posts:,} posts, {options.scale.votes:,} votes), "
        f"wrk -t{options.threads} -c{options.connections}, {options.duration:g} s per run, "
        f"{options.rounds} round(s), medians of the rounds shown."
    )
    add("")
    add(
        "| endpoint | postkit req/s | p50 ms | p99 ms "
        "| baseline req/s | p50 ms | p99 ms | postkit/baseline |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|")
    for endpoint in options.endpoints:
        p, b = pk.get(endpoint, []), bl.get(endpoint, [])
        p_rps, b_rps = median([r.rps for r in p]), median([r.rps for r in b])
        ratio = p_rps / b_rps if b_rps else float("nan")
        mark = ""
        if endpoint in THROUGHPUT_TARGETS:
            mark = " ✅" if ratio >= 0.5 else " ❌"
        add(
            f"| {LABELS[endpoint]} | {p_rps:.0f} | {median([r.p50_ms for r in p]):.1f} | "
            f"{median([r.p99_ms for r in p]):.1f} | {b_rps:.0f} | "
            f"{median([r.p50_ms for r in b]):.1f} | "
            f"{median([r.p99_ms for r in b]):.1f} | {ratio:.2f}{mark} |"
        )
    errors = {
        name: sum(r.non_2xx + r.socket_errors for runs in per.values() for r in runs)
        for name, per in results.endpoints.items()
    }
    add("")
    add(
        f"Non-2xx answers or socket errors during the runs: postkit {errors.get('postkit', 0)}, "
        f"baseline {errors.get('baseline', 0)}."
    )
    add("")
    if results.shape_problems:
        add("**The two servers answered differently** (so the comparison is not like for like): ")
        add("; ".join(results.shape_problems))
    else:
        add(
            "Both servers gave identical status codes and JSON bodies to the compared requests "
            "(feed page, search page, single post), checked before measuring."
        )
    add("")
    add(
        "Every post's `vote_count` equalled the sum of its votes after the runs."
        if not results.wrong_vote_counts
        else f"**{results.wrong_vote_counts} posts had a wrong `vote_count` after the runs.**"
    )
    add("")
    add("| check | postkit | baseline |")
    add("|---|---:|---:|")
    low = options.scale.votes_low
    for name_label, source in [(f"feed p99 at {low:,} votes (ms)", results.feed_low_votes)]:
        add(
            f"| {name_label} | {median([r.p99_ms for r in source.get('postkit', [])]):.1f} | "
            f"{median([r.p99_ms for r in source.get('baseline', [])]):.1f} |"
        )
    add(
        f"| feed p99 at {options.scale.votes:,} votes (ms) | "
        f"{median([r.p99_ms for r in pk.get('feed', [])]):.1f} | "
        f"{median([r.p99_ms for r in bl.get('feed', [])]):.1f} |"
    )
    for label, source in [
        ("single-post p99 alone (ms)", results.quiet_post),
        ("single-post p99 during a login storm (ms)", results.storm_post),
    ]:
        add(
            f"| {label} | {median([r.p99_ms for r in source.get('postkit', [])]):.1f} | "
            f"{median([r.p99_ms for r in source.get('baseline', [])]):.1f} |"
        )
    ratios, added = {}, {}
    for name in ("postkit", "baseline"):
        quiet = median([r.p99_ms for r in results.quiet_post.get(name, [])])
        stormy = median([r.p99_ms for r in results.storm_post.get(name, [])])
        ratios[name] = stormy / quiet if quiet else float("nan")
        added[name] = stormy - quiet
    add(
        f"| storm ratio (p99 during / alone) | {ratios['postkit']:.2f} | {ratios['baseline']:.2f} |"
    )
    add(f"| p99 added by the storm (ms) | {added['postkit']:.1f} | {added['baseline']:.1f} |")
    add(
        f"| logins/s during the storm ({options.storm_connections} connections) | "
        f"{median([r.rps for r in results.storm_login.get('postkit', [])]):.1f} | "
        f"{median([r.rps for r in results.storm_login.get('baseline', [])]):.1f} |"
    )
    add(
        "| peak RSS of the server process (MiB) | "
        f"{results.peak_rss_mib.get('postkit', float('nan')):.0f} | "
        f"{results.peak_rss_mib.get('baseline', float('nan')):.0f} |"
    )
    if results.explain:
        add("")
        add(
            "Query plans of postkit's own SQL for the hot requests "
            "(EXPLAIN ANALYZE, captured in-process):"
        )
        add("")
        add("| request | scans | sequential scans | ms |")
        add("|---|---|---|---:|")
        for plan in results.explain:
            add(
                f"| {plan['request']} | {'; '.join(plan['nodes'])} | "
                f"{', '.join(plan['seq_scans']) or 'none'} | {plan['ms']:.2f} |"
            )
    add("")
    add(
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions().items())
        + f", PostgreSQL {asyncio.run(postgres_version(database_url))}."
    )
    add("")
    add(
        f"Machine: {machine()}. Load average (1, 5, 15 min) before the run "
        f"{', '.join(f'{x:.2f}' for x in results.load_before)}, after "
        f"{', '.join(f'{x:.2f}' for x in results.load_after)}."
    )
    add("")
    add(f"Command: `{command}`")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    block = f"{RESULTS_START}\n{text}\n{RESULTS_END}"
    if DOC.exists() and RESULTS_START in DOC.read_text():
        current = DOC.read_text()
        before, rest = current.split(RESULTS_START, 1)
        _, after = rest.split(RESULTS_END, 1)
        DOC.write_text(before + block + after)
    else:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(f"# Benchmarks\n\n{block}\n")
    print(f"bench: results written to {DOC.relative_to(ROOT)}")


# --- Main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="reference")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads: 1 leaves the other core to the server and PostgreSQL",
    )
    parser.add_argument("--storm-connections", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POSTKIT_BENCH_POSTGRES_URL")
        or os.environ.get("POSTKIT_TEST_POSTGRES_URL")
        or DEFAULT_SERVER_URL,
    )
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument(
        "--app",
        choices=["reference", "minimal"],
        default="reference",
        help="serve examples/socialapp, or bench/postkit_app.py",
    )
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--json", type=Path, default=None, help="also save raw results here")
    args = parser.parse_args(argv)
    endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        parser.error(f"unknown endpoints {sorted(unknown)}; choose from {ENDPOINTS}")
    return Options(
        scale=SCALES[args.scale],
        duration=args.duration,
        rounds=args.rounds,
        connections=args.connections,
        threads=args.threads,
        storm_connections=args.storm_connections,
        warmup=args.warmup,
        bcrypt_rounds=args.bcrypt_rounds,
        postgres_url=args.postgres_url,
        database=args.database,
        app=args.app,
        endpoints=endpoints,
        write=not args.no_write,
        json_path=args.json,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    command = "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = Results(
        started=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        load_before=os.getloadavg(),
    )
    began = time.monotonic()
    specs = server_specs(options.app)
    secret = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix="postkit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        wrk = Wrk(tmp)
        scale = options.scale
        print(f"bench: seeding {scale.name} scale with {scale.votes_low:,} votes first", flush=True)
        database_url = seed(
            options.postgres_url,
            scale,
            database=options.database,
            votes=scale.votes_low,
            bcrypt_rounds=options.bcrypt_rounds,
        )
        env = server_environment(database_url, secret, options.bcrypt_rounds)
        print(
            f"bench: postkit app = {' '.join(specs['postkit'].args[8:])} "
            f"(cwd {specs['postkit'].cwd})"
        )
        print(f"bench: feed at {scale.votes_low:,} votes", flush=True)
        for _ in range(options.rounds):
            for name, spec in specs.items():
                measure_feed_only(name, spec, env, options, wrk, results.feed_low_votes, tmp)
        print(f"bench: adding votes up to {scale.votes:,}", flush=True)
        asyncio.run(add_votes(database_url, scale, start=scale.votes_low, stop=scale.votes))
        print("bench: EXPLAIN of postkit's hot queries", flush=True)
        results.explain = explain_hot_queries(database_url, secret, options.bcrypt_rounds)
        for plan in results.explain:
            print(
                f"  {plan['request']:7} seq scans: {plan['seq_scans'] or 'none'}; {plan['nodes']}"
            )
        with running(specs["postkit"], env, tmp) as pk, running(specs["baseline"], env, tmp) as bl:
            problems = compare_shapes(
                {"postkit": pk, "baseline": bl}, {"postkit": login(pk), "baseline": login(bl)}
            )
        results.shape_problems = problems
        for problem in problems:
            print(f"bench: WARNING the baseline answers differently: {problem}", flush=True)
        for round_number in range(1, options.rounds + 1):
            print(f"bench: round {round_number}/{options.rounds}", flush=True)
            order = list(specs.items())
            if round_number % 2 == 0:
                order.reverse()  # alternate who goes first, so drift hurts both alike
            for name, spec in order:
                measure_server(name, spec, env, options, wrk, results, tmp, database_url)
        wrong = asyncio.run(_check_vote_counts(database_url))
        results.wrong_vote_counts = wrong
        if wrong:
            print(f"bench: WARNING {wrong} posts have a vote_count different from their votes")
        results.seconds = time.monotonic() - began
        results.load_after = os.getloadavg()
        text = render(results, options, database_url, command)
    print()
    print(text)
    if options.json_path is not None:
        options.json_path.write_text(
            json.dumps(
                {
                    "endpoints": {
                        s: {e: [r.__dict__ for r in runs] for e, runs in per.items()}
                        for s, per in results.endpoints.items()
                    },
                    "feed_low_votes": {
                        s: [r.__dict__ for r in runs] for s, runs in results.feed_low_votes.items()
                    },
                    "quiet_post": {
                        s: [r.__dict__ for r in runs] for s, runs in results.quiet_post.items()
                    },
                    "storm_post": {
                        s: [r.__dict__ for r in runs] for s, runs in results.storm_post.items()
                    },
                    "storm_login": {
                        s: [r.__dict__ for r in runs] for s, runs in results.storm_login.items()
                    },
                    "peak_rss_mib": results.peak_rss_mib,
                    "explain": results.explain,
                },
                indent=2,
            )
        )
    if options.write:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
