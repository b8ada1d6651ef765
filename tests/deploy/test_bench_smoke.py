"""The benchmark runner at small scale, so that it cannot rot: ``bench/run.py`` end to end.

A real run (PostgreSQL, wrk, the reference app, the baseline and the SQLite file), with runs of
one second and one round: the figures mean nothing here, the run's machinery and its checks do.
It uses its own database (``postkit_bench_smoke``), never a developer's ``postkit_bench``, and
``--no-write``, so ``docs/benchmarks.md`` keeps the reference run.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import in_ci, postgres_server_url, require_postgres
from tests.support.paths import ROOT
from tests.support.servers import clean_env

pytestmark = pytest.mark.slow

RUNNER = ROOT / "bench" / "run.py"
DOC = ROOT / "docs" / "benchmarks.md"
ENDPOINTS = ["feed", "post", "vote"]


def require_wrk() -> None:
    """Skip (or, under CI, which installs it, fail) when wrk is not installed."""
    if shutil.which("wrk"):
        return
    if in_ci():
        pytest.fail("wrk is not installed; .ci/run installs it", pytrace=False)
    pytest.skip("wrk is not installed (apt-get install wrk): the benchmark smoke run needs it")


def every_run(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every wrk run the JSON records, named by where it sits."""
    runs: list[tuple[str, dict[str, Any]]] = []
    for server, per in data["endpoints"].items():
        for endpoint, results in per.items():
            runs += [(f"{server} {endpoint}", r) for r in results]
    for key in ("feed_low_votes", "quiet_post", "storm_post", "storm_login", "sqlite"):
        for name, results in data[key].items():
            runs += [(f"{key} {name}", r) for r in results]
    return runs


def test_bench_runs_at_small_scale(tmp_path: Path) -> None:
    require_postgres("the benchmark smoke run")
    require_wrk()
    server_url = postgres_server_url()
    assert server_url is not None
    raw = tmp_path / "bench.json"
    doc_before = DOC.read_text()
    command = [
        sys.executable, str(RUNNER),
        "--scale", "small", "--duration", "1", "--rounds", "1", "--warmup", "0.5",
        "--bcrypt-rounds", "4", "--endpoints", ",".join(ENDPOINTS),
        "--postgres-url", server_url, "--database", "postkit_bench_smoke",
        "--no-write", "--json", str(raw),
    ]  # fmt: skip
    completed = subprocess.run(
        command,
        cwd=ROOT,
        env=clean_env(PYTHONUNBUFFERED="1"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, (out[-4000:], completed.stderr[-4000:])
    assert DOC.read_text() == doc_before, "--no-write must leave docs/benchmarks.md alone"

    data = json.loads(raw.read_text())
    # The baseline is fair: the same status codes and bodies as postkit's to the same requests.
    assert data["shape_problems"] == [], data["shape_problems"]
    assert "Both servers gave identical status codes and JSON bodies" in out
    # Vote then unvote left every counter exact, on PostgreSQL and on SQLite.
    assert data["wrong_vote_counts"] == 0
    assert data["sqlite_wrong_vote_counts"] == 0
    # Every server ran every endpoint asked, SQLite included, and every run has its CPU time.
    assert set(data["endpoints"]) == {"postkit", "baseline"}
    for server in ("postkit", "baseline"):
        assert set(data["endpoints"][server]) == set(ENDPOINTS)
    assert set(data["sqlite"]) == set(ENDPOINTS)
    runs = every_run(data)
    assert len(runs) == 2 * len(ENDPOINTS) + len(ENDPOINTS) + 2 * 4
    for name, run in runs:
        assert run["requests"] > 0, name
        cpu = run["cpu_ms_per_request"]
        assert math.isfinite(cpu), (name, run)
        assert cpu > 0, (name, run)
        assert run["cpu_seconds"] > 0, (name, run)
    # The report: CPU per request in the main table, the SQLite table, and the targets.
    assert "| CPU ms/req |" in out
    assert "CPU/req baseline/postkit" in out
    assert "postkit on SQLite" in out
    assert "| target | measured | met? |" in out
    assert len(data["targets"]) == 11
    assert all(isinstance(target["met"], bool) for target in data["targets"])
    last = out.strip().splitlines()[-1]
    if all(target["met"] for target in data["targets"]):
        assert last == "bench: every target met"
    else:
        assert re.fullmatch(r"bench: targets not met: .+", last), last
