"""Real servers for the deployment, example-app and docs-site tests: processes on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = ROOT / "examples" / "socialapp"

# Variables of the example app that must not leak from the developer's shell into a test.
APP_ENV_NAMES = (
    "ENVIRONMENT",
    "DATABASE_URL",
    "SECRET_KEY",
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "LOG_LEVEL",
    "MIGRATE_ON_STARTUP",
    "BCRYPT_ROUNDS",
    "PUBLIC_READS",
    "BANNED_WORDS",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without the app's or postkit's settings, plus ``overrides``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in APP_ENV_NAMES and not name.startswith("POSTKIT_")
    }
    env.update(overrides)
    return env


class LiveProcess:
    """A server process whose combined output goes to a file the test can read."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log_path = log

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, *, timeout: float = 60.0) -> httpx.Response:
        """Poll ``url`` until it answers (any status); fail if the process dies first."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode} before answering:\n{self.log}"
                )
            try:
                return httpx.get(url, timeout=2.0)
            except httpx.TransportError as exc:
                last_error = exc
                time.sleep(0.2)
        raise AssertionError(f"{url} did not answer in {timeout}s ({last_error}):\n{self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def live_process(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
) -> Iterator[LiveProcess]:
    """Start ``argv`` and stop it (SIGTERM, then SIGKILL) when the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    server = LiveProcess(process, log)
    try:
        yield server
    finally:
        server.stop()


def require_node() -> tuple[str, str]:
    """The paths of node and npm; a skip locally, a failure under CI."""
    import pytest

    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node and npm are needed for this test", pytrace=False)
        pytest.skip("node and npm are needed for this test")
    return node, npm


def npm_package(spec: str) -> Path:
    """Install an npm package (``name@version``) once into a cache; return its folder."""
    _, npm = require_node()
    name = spec.rsplit("@", 1)[0]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "postkit-npm"
    prefix = cache / spec.replace("/", "_")
    package = prefix / "node_modules" / name
    if not (package / "package.json").is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), spec],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return package
