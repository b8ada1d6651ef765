"""postkit against a hand-written baseline, side by side, on one PostgreSQL database.

    python bench/run.py                       # reference scale: 10k users, 100k posts, 1M votes
    python bench/run.py --scale small --duration 3 --rounds 1 --no-write   # a quick look

It seeds a fresh database through postkit's migrations (``bench/seed.py``), then serves, in turn
and on loopback, the reference app (``examples/socialapp`` under uvicorn, one worker) and the
baseline (``bench/baseline_app.py``), and drives each with wrk at 32 connections, back to back,
for several rounds. It prints requests/s, p50 and p99 per endpoint for both and the ratio, the
feed's p99 at a low and at the full vote count, the single-post p99 during a login storm, the
servers' peak RSS, and EXPLAIN summaries of postkit's own hot queries. Every wrk run also records
the server process's CPU time, shown per request. Unless ``--no-sqlite``, it then serves the
reference app on a SQLite file seeded with the same rows and measures it alone. It ends with
issue 13's targets, each marked met or not, and a last line saying which are not met (the exit
status is 0 either way); and it writes the results into ``docs/benchmarks.md`` between the
``bench:results`` markers.

Needs wrk (``apt-get install wrk``) and a PostgreSQL server whose user may create databases
(``--postgres-url``, default ``$POSTKIT_BENCH_POSTGRES_URL``, ``$POSTKIT_TEST_POSTGRES_URL`` or
``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# Run as ``python bench/run.py``: the bench modules sit beside this file, and the test suite's
# helpers (tests/support) are imported from the repository root.
sys.path[:0] = [str(BENCH_DIR), str(ROOT)]

from harness import (  # noqa: E402
    ENDPOINTS,
    Options,
    Results,
    _check_vote_counts,
    check_vote_counts_sqlite,
    compare_shapes,
    explain_hot_queries,
    login,
    measure_feed_only,
    measure_server,
    measure_sqlite,
    running,
    server_environment,
    server_specs,
)
from report import Target, render, summary_line, targets, write_doc  # noqa: E402
from seed import (  # noqa: E402
    DEFAULT_DATABASE,
    DEFAULT_SERVER_URL,
    SCALES,
    add_votes,
    seed,
    seed_sqlite,
)
from wrk import Wrk, WrkResult  # noqa: E402

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
    parser.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help="the database to DROP, recreate and seed on that server (default: %(default)s)",
    )
    parser.add_argument(
        "--app",
        choices=["reference", "minimal"],
        default="reference",
        help="serve examples/socialapp, or bench/postkit_app.py",
    )
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument(
        "--no-sqlite",
        action="store_true",
        help="skip the SQLite figures (postkit alone on a SQLite file at the same scale)",
    )
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
        sqlite=not args.no_sqlite,
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
        if options.sqlite:
            sqlite_path = tmp / "postkit_bench.db"
            print(f"bench: SQLite: seeding {sqlite_path}", flush=True)
            seeded = time.monotonic()
            sqlite_url = seed_sqlite(sqlite_path, scale, bcrypt_rounds=options.bcrypt_rounds)
            results.sqlite_seed_seconds = time.monotonic() - seeded
            sqlite_env = server_environment(sqlite_url, secret, options.bcrypt_rounds)
            for round_number in range(1, options.rounds + 1):
                print(f"bench: SQLite round {round_number}/{options.rounds}", flush=True)
                measure_sqlite(
                    specs["postkit"], sqlite_env, options, wrk, results, tmp, sqlite_path
                )
            results.sqlite_wrong_vote_counts = check_vote_counts_sqlite(sqlite_path)
            if results.sqlite_wrong_vote_counts:
                print(
                    f"bench: WARNING on SQLite {results.sqlite_wrong_vote_counts} posts have a "
                    "vote_count different from their votes"
                )
        results.seconds = time.monotonic() - began
        results.load_after = os.getloadavg()
        text = render(results, options, database_url, command)
    print()
    print(text)
    found = targets(results, options)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(raw_results(results, found), indent=2))
    if options.write:
        write_doc(text)
    print(summary_line(found), flush=True)
    return 0


def raw_results(results: Results, found: list[Target]) -> dict[str, Any]:
    """What ``--json`` saves: every wrk run (with its CPU time per request) and the verdicts."""

    def runs(per: dict[str, list[WrkResult]]) -> dict[str, list[dict[str, Any]]]:
        return {key: [r.as_json() for r in rs] for key, rs in per.items()}

    return {
        "endpoints": {server: runs(per) for server, per in results.endpoints.items()},
        "feed_low_votes": runs(results.feed_low_votes),
        "quiet_post": runs(results.quiet_post),
        "storm_post": runs(results.storm_post),
        "storm_login": runs(results.storm_login),
        "sqlite": runs(results.sqlite),
        "peak_rss_mib": results.peak_rss_mib,
        "sqlite_peak_rss_mib": results.sqlite_peak_rss_mib,
        "shape_problems": results.shape_problems,
        "wrong_vote_counts": results.wrong_vote_counts,
        "sqlite_wrong_vote_counts": results.sqlite_wrong_vote_counts,
        "explain": results.explain,
        "targets": [
            {"target": t.target, "measured": t.measured, "met": t.met, "stretch": t.stretch}
            for t in found
        ],
    }


if __name__ == "__main__":
    raise SystemExit(main())
