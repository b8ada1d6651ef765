"""Real server processes (uvicorn, gunicorn, mkdocs, nginx, ...) on free loopback ports.

Every process writes its combined output to a log file the test can read, and is always stopped
(SIGTERM, then SIGKILL) when its ``with`` block ends. Servers of postkit itself are configured
only through ``POSTKIT_*`` variables (``server_env``) and serve ``reliability_app.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.support.api import TEST_SECRET
from tests.support.paths import SUPPORT_DIR

APP_FACTORY = "reliability_app:create_app"

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


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without the app's or postkit's settings, plus ``overrides``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in APP_ENV_NAMES and not name.startswith("POSTKIT_")
    }
    env.update(overrides)
    return env


def server_env(database_url: str, **settings: Any) -> dict[str, str]:
    """The environment of a postkit server process: ``clean_env()`` plus the test's settings as
    ``POSTKIT_<NAME>`` (a test secret, bcrypt cost 4 and no plugin discovery by default)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "bcrypt_rounds": 4,
        "discover_plugins": False,
    }
    values.update(settings)
    env = clean_env(PYTHONUNBUFFERED="1")
    for name, value in values.items():
        env[f"POSTKIT_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


def uvicorn_command(port: int, *extra: str) -> list[str]:
    """uvicorn serving ``reliability_app`` on 127.0.0.1:``port``."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(SUPPORT_DIR), APP_FACTORY,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra,
    ]  # fmt: skip


def gunicorn_command(port: int, workers: int, *extra: str) -> list[str]:
    """gunicorn with ``workers`` uvicorn workers serving ``reliability_app`` on ``port``."""
    return [
        sys.executable, "-m", "gunicorn", "--chdir", str(SUPPORT_DIR),
        "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5", "--timeout", "60",
        "--log-level", "info", f"{APP_FACTORY}()", *extra,
    ]  # fmt: skip


class LiveProcess:
    """A server process, where to reach it (``url``, when known) and its log."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, url: str = "") -> None:
        self.process = process
        self.log_path = log
        self.url = url

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_http(self, url: str, *, timeout: float = 60.0) -> httpx.Response:
        """Poll ``url`` until it answers (any status); fail if the process dies first."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(
                    f"server exited with {self.process.returncode} before answering:\n{self.log}"
                )
            try:
                return httpx.get(url, timeout=2.0)
            except httpx.TransportError as exc:
                last_error = exc
                time.sleep(0.1)
        raise AssertionError(f"{url} did not answer in {timeout}s ({last_error}):\n{self.log}")

    def stop(self, timeout: float = 20.0) -> None:
        stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL when ``process`` has not exited after ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_until_serving(server: LiveProcess, timeout: float = 60.0) -> None:
    """Poll a postkit server until it answers HTTP; fail with its log if it dies first."""
    server.wait_http(f"{server.url}/users/me", timeout=timeout)


@contextlib.contextmanager
def live_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    url: str = "",
) -> Iterator[LiveProcess]:
    """Start ``argv`` and stop it (SIGTERM, then SIGKILL) when the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    server = LiveProcess(process, log, url)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    port: int,
    wait: bool = True,
) -> Iterator[LiveProcess]:
    """Start a postkit server ``command`` listening on ``port``; unless ``wait`` is false, wait
    until it answers HTTP. Stopped when the block ends."""
    log = log_dir / f"server-{port}-{uuid.uuid4().hex[:6]}.log"
    url = f"http://127.0.0.1:{port}"
    with live_process(command, cwd=SUPPORT_DIR, env=env, log=log, url=url) as server:
        if wait:
            wait_until_serving(server)
        yield server
