"""Does a flood of registrations slow down someone else's login? ``python bench/hashing_queue.py``

Serves the minimal postkit app (``bench/postkit_app.py``) with one uvicorn worker on loopback, on
a fresh SQLite file (or ``--database-url``), at the production bcrypt cost. One user logs in
repeatedly, first alone, then while another client (another loopback address) keeps
``--flood`` registrations in flight at once. Prints the user's login latency both ways, and what
the flood got (201 created, 503 SERVICE_BUSY), twice: with a flood that waits the
``Retry-After`` it is given, and with one that retries at once. The target: under the flood, the
median login stays below twice its unloaded value.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from postkit.migrations import upgrade

BENCH_DIR = Path(__file__).resolve().parent
PASSWORD = "correct horse battery staple"
SECRET = "bench-secret-key-that-is-long-enough-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(database_url: str, port: int, rounds: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTKIT_")}
    env.update(
        POSTKIT_DATABASE_URL=database_url,
        POSTKIT_SECRET_KEY=SECRET,
        POSTKIT_BCRYPT_ROUNDS=str(rounds),
        POSTKIT_DISCOVER_PLUGINS="false",
    )
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(BENCH_DIR),
        "postkit_app:create_app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env)


def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            httpx.get(f"{url}/users/me", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer within 60 s")


def client(url: str, source: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    transport = httpx.AsyncHTTPTransport(local_address=source, limits=limits)
    return httpx.AsyncClient(transport=transport, base_url=url, timeout=60)


async def login_latencies(http: httpx.AsyncClient, email: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = await http.post("/login", data={"username": email, "password": PASSWORD})
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return times


async def flood(
    http: httpx.AsyncClient, stop: asyncio.Event, tally: Counter[int], *, polite: bool
) -> None:
    while not stop.is_set():
        email = f"flood_{uuid.uuid4().hex[:12]}@example.com"
        try:
            response = await http.post("/users", json={"email": email, "password": PASSWORD})
        except httpx.TransportError:
            tally[0] += 1  # the connection failed (counted as status 0)
            continue
        tally[response.status_code] += 1
        if polite and response.status_code == 503:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return f"median {statistics.median(times) * 1000:6.0f} ms   p90 {p90 * 1000:6.0f} ms"


async def measure(url: str, *, logins: int, flooders: int, polite: bool) -> tuple[float, float]:
    async with client(url, "127.0.0.3") as user, client(url, "127.0.0.2") as attacker:
        email = f"bench_{uuid.uuid4().hex[:8]}@example.com"
        created = await user.post("/users", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        await login_latencies(user, email, 3)  # warm up
        alone = await login_latencies(user, email, logins)
        kind = "honouring Retry-After" if polite else "retrying at once"
        print(f"\n-- flood {kind} --")
        print(f"login alone:           {summary(alone)}")

        stop = asyncio.Event()
        tally: Counter[int] = Counter()
        tasks = [
            asyncio.create_task(flood(attacker, stop, tally, polite=polite))
            for _ in range(flooders)
        ]
        await asyncio.sleep(1.0)  # let the flood fill the queues
        flood_started = time.perf_counter()
        loaded = await login_latencies(user, email, logins)
        elapsed = time.perf_counter() - flood_started
        stop.set()
        await asyncio.gather(*tasks)
        print(f"login under the flood: {summary(loaded)}")
        print(
            f"flood of {flooders} parallel registrations: "
            + ", ".join(f"{count} x {status}" for status, count in sorted(tally.items()))
            + f" ({sum(tally.values()) / (elapsed + 1.0):.0f} requests/s)"
        )
        return statistics.median(alone), statistics.median(loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default 12)")
    parser.add_argument("--logins", type=int, default=20, help="logins measured each way")
    parser.add_argument("--flood", type=int, default=40, help="registrations in flight at once")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        upgrade(url)
        port = free_port()
        server = start_server(url, port, args.rounds)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, server)
            print(f"{os.cpu_count()} cores, bcrypt cost {args.rounds}, one uvicorn worker")
            for polite in (True, False):
                alone, loaded = asyncio.run(
                    measure(base, logins=args.logins, flooders=args.flood, polite=polite)
                )
                ratio = loaded / alone
                verdict = "within" if ratio <= 2 else "OVER"
                print(f"median under the flood / alone: {ratio:.2f} ({verdict} the target of 2)")
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
