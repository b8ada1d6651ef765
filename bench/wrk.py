"""wrk, the load generator: one invocation per ``Load``, its JSON result line parsed."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRK_DIR = Path(__file__).resolve().parent / "wrk"


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
    # CPU seconds (user + system, every thread) the server process spent while this run lasted;
    # NaN when not measured. In the login storm the two loads share the window.
    cpu_seconds: float = math.nan

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """The server's CPU time per completed request, in milliseconds (NaN if not measured)."""
        return self.cpu_seconds * 1000 / self.requests if self.requests else math.nan

    def as_json(self) -> dict[str, Any]:
        """The run as saved by ``--json``: the measured fields plus the derived rates."""
        return {
            **self.__dict__,
            "rps": self.rps,
            "cpu_ms_per_request": self.cpu_ms_per_request,
        }

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


CpuClock = Callable[[], float]
"""Reads a server process's CPU seconds so far (``Server.cpu_seconds``)."""


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

    def run(self, url: str, load: Load, cpu: CpuClock | None = None) -> WrkResult:
        """Run ``load`` against ``url``; with ``cpu``, record the server's CPU seconds it took."""
        before = cpu() if cpu is not None else math.nan
        completed = subprocess.run(
            self.command(url, load),
            capture_output=True,
            text=True,
            timeout=load.duration + 60,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"wrk failed: {completed.stderr}\n{completed.stdout}")
        result = WrkResult.parse(completed.stdout)
        if cpu is not None:
            result.cpu_seconds = cpu() - before
        return result

    def run_pair(
        self, url: str, main: Load, side: Load, cpu: CpuClock | None = None
    ) -> tuple[WrkResult, WrkResult]:
        """Run two loads at once (the single-post load during a login storm).

        With ``cpu``, each result records the server's CPU seconds over its own window: the main
        load's covers both loads' work while it ran, the side load's its whole run.
        """
        side_before = cpu() if cpu is not None else math.nan
        first = subprocess.Popen(
            self.command(url, side), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            time.sleep(1.0)  # let the side load get going first
            main_result = self.run(url, main, cpu)
            out, err = first.communicate(timeout=side.duration + 60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        side_result = WrkResult.parse(out + err)
        if cpu is not None:
            side_result.cpu_seconds = cpu() - side_before
        return main_result, side_result
