"""Helpers of the reliability tests: real server processes on loopback, and HTTP helpers.

Servers are bound to 127.0.0.1 on free ports, configured only through ``POSTKIT_*`` variables,
and always stopped (SIGTERM, then SIGKILL) when their ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

TESTS_DIR = Path(__file__).resolve().parent
APP_FACTORY = "reliability_app:create_app"
SECRET = "reliability-secret-key-long-enough-0123456789abcdef"
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database_url: str, **settings: Any) -> dict[str, str]:
    """The environment of a server process: the current one without any ``POSTKIT_*`` or app
    variable, plus the test's settings as ``POSTKIT_<NAME>``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("POSTKIT_") and name not in {"DATABASE_URL", "SECRET_KEY"}
    }
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": SECRET,
        "bcrypt_rounds": 4,
        "discover_plugins": False,
    }
    values.update(settings)
    for name, value in values.items():
        env[f"POSTKIT_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Server:
    """A running server process and where to reach it."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def uvicorn_command(port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(TESTS_DIR), APP_FACTORY,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra,
    ]  # fmt: skip


def gunicorn_command(port: int, workers: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "--chdir", str(TESTS_DIR),
        "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5", "--timeout", "60",
        "--log-level", "info", f"{APP_FACTORY}()", *extra,
    ]  # fmt: skip


def wait_until_serving(server: Server, timeout: float = 60.0) -> None:
    """Poll until the server answers HTTP; fail with its log if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive:
            raise AssertionError(f"server exited ({server.process.returncode}):\n{server.log}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{server.url}/users/me", timeout=2.0)
            return
        time.sleep(0.1)
    raise AssertionError(f"server did not answer within {timeout} s:\n{server.log}")


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    port: int,
    wait: bool = True,
) -> Iterator[Server]:
    """Start ``command`` (which listens on ``port``), wait until it answers, stop it after."""
    log_path = log_dir / f"server-{port}-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            list(command), cwd=TESTS_DIR, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        if wait:
            wait_until_serving(server)
        yield server
    finally:
        stop(process)


@dataclass
class Account:
    id: int
    username: str
    headers: dict[str, str]


async def register(client: httpx.AsyncClient, name: str | None = None) -> Account:
    """Create an account and log it in through the API."""
    name = name or f"u{uuid.uuid4().hex[:10]}"
    created = await client.post(
        "/users", json={"email": f"{name}@example.com", "username": name, "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    token = await client.post("/login", data={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return Account(
        id=created.json()["id"],
        username=name,
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
