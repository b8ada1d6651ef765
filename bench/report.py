"""The report: the results as the Markdown block of docs/benchmarks.md, and writing it there."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import asyncpg
from harness import SQLITE_ENDPOINTS, Options, Results
from wrk import WrkResult

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
# Issue 13's targets, judged on the run's medians (see ``targets``).
THROUGHPUT_TARGET = 0.5  # postkit's throughput / the baseline's, on each of THROUGHPUT_TARGETS
THROUGHPUT_STRETCH = 0.7
THROUGHPUT_TARGETS = ["feed", "post", "search", "cursor"]
READ_ENDPOINTS = ["feed", "search", "cursor", "post"]
P99_TARGET_MS = 50.0
RSS_TARGET = 1.5  # postkit's peak RSS / the baseline's
FLAT_TARGET = 1.25  # feed p99 at the full vote count / at the low one
TUTORIAL_MULTIPLE = 10.0
# The tutorial app (the FastAPI course app: sync SQLAlchemy ORM, pydantic v1), measured in issue 13
# on the same kind of 2-core machine (uvicorn, one worker, wrk -t1 -c32, 10 s, reference scale).
TUTORIAL_RPS = {"feed": 86.0, "post": 257.0}
NAMES = {"feed": "feed", "search": "search", "cursor": "cursor page", "post": "single post"}


# --- Reporting ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_ms(runs: list[WrkResult]) -> float:
    """The median over the rounds of the server's CPU milliseconds per request."""
    return median([r.cpu_ms_per_request for r in runs])


@dataclass
class Target:
    """One of issue 13's targets: what it asks, what the run measured, and whether it is met."""

    target: str
    measured: str
    met: bool
    stretch: bool | None = None  # the stretch goal, for the throughput targets
    short: str = ""  # how the final line names it when it is not met

    def mark(self) -> str:
        text = "✅" if self.met else "❌"
        if self.stretch is not None:
            text += f", stretch {'✅' if self.stretch else '❌'}"
        return text


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def _ok(value: float, bound: float, *, at_most: bool = False) -> bool:
    """``value`` within ``bound`` (NaN, i.e. not measured, never is)."""
    if math.isnan(value):
        return False
    return value <= bound if at_most else value >= bound


def targets(results: Results, options: Options) -> list[Target]:
    """Issue 13's targets, each judged on this run's medians."""
    pk = results.endpoints.get("postkit", {})
    bl = results.endpoints.get("baseline", {})

    def rps(runs: dict[str, list[WrkResult]], endpoint: str) -> float:
        return median([r.rps for r in runs.get(endpoint, [])])

    def ratios(endpoint: str) -> tuple[float, float]:
        """Throughput postkit/baseline and CPU per request baseline/postkit."""
        p_cpu, b_cpu = cpu_ms(pk.get(endpoint, [])), cpu_ms(bl.get(endpoint, []))
        return _div(rps(pk, endpoint), rps(bl, endpoint)), _div(b_cpu, p_cpu)

    out: list[Target] = []
    for endpoint in THROUGHPUT_TARGETS:
        ratio, cpu_ratio = ratios(endpoint)
        goal = (
            f"{NAMES[endpoint]} throughput ≥ {THROUGHPUT_TARGET}x the baseline "
            f"(stretch {THROUGHPUT_STRETCH}x)"
        )
        if math.isnan(ratio):
            out.append(_unmeasured(goal, NAMES[endpoint], stretch=True))
            continue
        out.append(
            Target(
                goal,
                f"{ratio:.2f}x ({rps(pk, endpoint):.0f} against {rps(bl, endpoint):.0f} req/s; "
                f"CPU per request {cpu_ratio:.2f}x)",
                _ok(ratio, THROUGHPUT_TARGET),
                _ok(ratio, THROUGHPUT_STRETCH),
                f"{NAMES[endpoint]} {ratio:.2f}x the baseline",
            )
        )
    ratio, cpu_ratio = ratios("vote")
    wrong = results.wrong_vote_counts
    goal = f"vote then unvote ≥ {THROUGHPUT_TARGET}x the baseline, counters exact afterwards"
    if math.isnan(ratio):
        out.append(_unmeasured(goal, "vote"))
    else:
        out.append(
            Target(
                goal,
                f"{ratio:.2f}x (CPU per request {cpu_ratio:.2f}x); "
                f"{wrong} post(s) with a wrong `vote_count`",
                _ok(ratio, THROUGHPUT_TARGET) and wrong == 0,
                short=f"vote {ratio:.2f}x the baseline"
                + (f", {wrong} wrong vote_count(s)" if wrong else ""),
            )
        )
    p99 = {e: median([r.p99_ms for r in pk.get(e, [])]) for e in READ_ENDPOINTS}
    out.append(
        Target(
            f"p99 < {P99_TARGET_MS:g} ms at {options.connections} connections on every read",
            ", ".join(
                f"{NAMES[e]} " + ("not measured" if math.isnan(v) else f"{v:.1f} ms")
                for e, v in p99.items()
            ),
            all(v < P99_TARGET_MS for v in p99.values()),  # NaN (not measured) is not
            short="p99 "
            + ", ".join(
                f"{NAMES[e]} " + ("not measured" if math.isnan(v) else f"{v:.0f} ms")
                for e, v in p99.items()
                if not v < P99_TARGET_MS
            ),
        )
    )
    p_rss = results.peak_rss_mib.get("postkit", math.nan)
    b_rss = results.peak_rss_mib.get("baseline", math.nan)
    out.append(
        Target(
            f"peak RSS of the server ≤ {RSS_TARGET}x the baseline's",
            f"{_div(p_rss, b_rss):.2f}x ({p_rss:.0f} against {b_rss:.0f} MiB)",
            _ok(_div(p_rss, b_rss), RSS_TARGET, at_most=True),
            short=f"peak RSS {_div(p_rss, b_rss):.2f}x the baseline's",
        )
    )
    storm = {}
    for name in ("postkit", "baseline"):
        quiet = median([r.p99_ms for r in results.quiet_post.get(name, [])])
        stormy = median([r.p99_ms for r in results.storm_post.get(name, [])])
        storm[name] = _div(stormy, quiet)
    out.append(
        Target(
            "login storm: single-post p99 during / alone no worse than the baseline's ratio",
            f"x{storm['postkit']:.2f} against x{storm['baseline']:.2f}",
            _ok(storm["postkit"], storm["baseline"], at_most=True),
            short=f"login storm x{storm['postkit']:.2f} against x{storm['baseline']:.2f}",
        )
    )
    low = median([r.p99_ms for r in results.feed_low_votes.get("postkit", [])])
    full = p99["feed"]
    out.append(
        Target(
            f"feed flat in votes: p99 at {options.scale.votes:,} votes ≤ {FLAT_TARGET}x "
            f"at {options.scale.votes_low:,}",
            f"{low:.1f} → {full:.1f} ms ({_div(full, low):.2f}x)",
            _ok(_div(full, low), FLAT_TARGET, at_most=True),
            short=f"feed p99 {_div(full, low):.2f}x from {options.scale.votes_low:,} votes",
        )
    )
    for endpoint, tutorial in TUTORIAL_RPS.items():
        multiple = rps(pk, endpoint) / tutorial
        goal = (
            f"{NAMES[endpoint]} ≥ {TUTORIAL_MULTIPLE:g}x the tutorial app "
            f"({tutorial:.0f} req/s in issue 13, measured on this same 2-core machine kind, "
            "not run here)"
        )
        if math.isnan(multiple):
            out.append(_unmeasured(goal, f"{NAMES[endpoint]} against the tutorial app"))
            continue
        out.append(
            Target(
                goal,
                f"{multiple:.1f}x ({rps(pk, endpoint):.0f} req/s)",
                _ok(multiple, TUTORIAL_MULTIPLE),
                short=f"{NAMES[endpoint]} {multiple:.1f}x the tutorial app",
            )
        )
    return out


def _unmeasured(target: str, name: str, *, stretch: bool = False) -> Target:
    """The row of a target whose endpoint this run left out (``--endpoints``): not met."""
    return Target(
        target, "not measured (endpoint left out)", False, False if stretch else None,
        f"{name} not measured",
    )  # fmt: skip


def summary_line(found: list[Target]) -> str:
    """The runner's last line: every target met, or which are not."""
    missed = [t.short for t in found if not t.met]
    if not missed:
        return "bench: every target met"
    return "bench: targets not met: " + "; ".join(missed)


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
        "| endpoint | postkit req/s | p50 ms | p99 ms | CPU ms/req "
        "| baseline req/s | p50 ms | p99 ms | CPU ms/req "
        "| throughput postkit/baseline | CPU/req baseline/postkit |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for endpoint in options.endpoints:
        p, b = pk.get(endpoint, []), bl.get(endpoint, [])
        p_rps, b_rps = median([r.rps for r in p]), median([r.rps for r in b])
        p_cpu, b_cpu = cpu_ms(p), cpu_ms(b)
        ratio = p_rps / b_rps if b_rps else float("nan")
        cpu_ratio = b_cpu / p_cpu if p_cpu else float("nan")
        add(
            f"| {LABELS[endpoint]} | {p_rps:.0f} | {median([r.p50_ms for r in p]):.1f} | "
            f"{median([r.p99_ms for r in p]):.1f} | {p_cpu:.3f} | {b_rps:.0f} | "
            f"{median([r.p50_ms for r in b]):.1f} | "
            f"{median([r.p99_ms for r in b]):.1f} | {b_cpu:.3f} | {ratio:.2f} | {cpu_ratio:.2f} |"
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
    if results.sqlite:
        add("")
        add(
            f"postkit on SQLite (the reference app on a SQLite file in WAL mode, same scale and "
            f"rows, seeded in {results.sqlite_seed_seconds:.0f} s; no baseline on SQLite):"
        )
        add("")
        add("| endpoint | req/s | p50 ms | p99 ms | CPU ms/req | non-2xx or errors |")
        add("|---|---:|---:|---:|---:|---:|")
        for endpoint in SQLITE_ENDPOINTS:
            runs = results.sqlite.get(endpoint, [])
            if not runs:
                continue
            add(
                f"| {LABELS[endpoint]} | {median([r.rps for r in runs]):.0f} | "
                f"{median([r.p50_ms for r in runs]):.1f} | "
                f"{median([r.p99_ms for r in runs]):.1f} | {cpu_ms(runs):.3f} | "
                f"{sum(r.non_2xx + r.socket_errors for r in runs)} |"
            )
        add("")
        add(
            f"On SQLite, peak RSS {results.sqlite_peak_rss_mib:.0f} MiB; "
            + (
                "every post's `vote_count` equalled the sum of its votes after the runs."
                if not results.sqlite_wrong_vote_counts
                else f"**{results.sqlite_wrong_vote_counts} posts had a wrong `vote_count`.**"
            )
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
    add("")
    add(
        "Targets (issue 13), judged on the medians above"
        + (
            ""
            if options.scale.name == "reference"
            else f" (they are set for the reference scale; this run is at {options.scale.name})"
        )
        + ":"
    )
    add("")
    add("| target | measured | met? |")
    add("|---|---|---|")
    for target in targets(results, options):
        add(f"| {target.target} | {target.measured} | {target.mark()} |")
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
