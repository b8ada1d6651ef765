#!/usr/bin/env python3
"""Developer entry point that needs nothing but Python and pip.

    python dev.py serve   # the reference app on http://127.0.0.1:8000 (SQLite, no configuration)
    python dev.py test    # the test suite (PostgreSQL too when POSTKIT_TEST_POSTGRES_URL is set)
    python dev.py test -m "not slow"   # the quick loop: no real server processes
    python dev.py check   # ruff and mypy

The first run creates ``.venv`` and installs postkit with its test and server extras; later runs
reinstall only when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("POSTKIT_DEV_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
EXTRAS = "test,lint,docs,server"


def ensure_environment() -> None:
    stamp = VENV / ".postkit-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"dev.py: creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    print("dev.py: installing postkit and its development tools", flush=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "-e", f".[{EXTRAS}]"],
        check=True,
        cwd=ROOT,
    )
    stamp.write_text(wanted)


def run(*args: str, cwd: Path = ROOT) -> int:
    return subprocess.run([str(PYTHON), "-m", *args], cwd=cwd).returncode


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command not in {"serve", "test", "check"}:
        print(__doc__)
        return 0 if command == "help" else 2
    ensure_environment()
    if command == "test":
        return run("pytest", *rest)
    if command == "check":
        return run("ruff", "check", ".") or run("ruff", "format", "--check", ".") or run("mypy")
    example = ROOT / "examples" / "socialapp"
    port = os.environ.get("PORT", "8000")
    return run("uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", port, *rest, cwd=example)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
