"""The report: the results as the Markdown block of docs/benchmarks.md, and writing it there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
from importlib import metadata
from pathlib import Path

import asyncpg
from harness import Options, Results

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS_START = "<!-- bench:results:start -->"
RESULTS_END = "<!-- bench:results:end -->"
LABELS = {
    "feed": "GET /posts?limit=10",
    "search": "GET /posts?limit=10&search=…",
    "cursor": "GET /posts?limit=10&cursor=… (page 2)",
    "post": "GET /posts/{id}",
    "vote": "PUT then DELETE /posts/{id}/vote",
    "login": "POST /login (bcrypt)",
}
THROUGHPUT_TARGETS = {"feed", "search", "post"}


# --- Reporting ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in [
        "fastapi-postkit",
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
