#!/usr/bin/env python3
"""Developer entry point that needs nothing but Python and pip.

    python dev.py serve [ARGS]       # the reference app on http://127.0.0.1:8000 (SQLite, no
                                     # configuration): uvicorn in examples/socialapp; PORT moves it
    python dev.py test [ARGS]        # the test suite: pytest ARGS (PostgreSQL too when
                                     # POSTKIT_TEST_POSTGRES_URL is set)
    python dev.py test -m "not slow" # the quicker loop: no real server processes
    python dev.py check              # ruff check, ruff format --check, then mypy (strict, on
                                     # src/postkit, as pyproject.toml configures it)
    python dev.py docs [ARGS]        # build the documentation site strictly into site/:
                                     # mkdocs build --strict (a warning fails the build)
    python dev.py docs serve [ARGS]  # the documentation site with live reload on
                                     # http://127.0.0.1:8001: mkdocs serve
    python dev.py nox [ARGS]         # any nox session, e.g. `python dev.py nox -s lint`; with no
                                     # ARGS the default sessions, `python dev.py nox -l` lists them
    python dev.py bench [ARGS]       # the benchmarks: bench/run.py ARGS (needs wrk and PostgreSQL)
    python dev.py help               # this text (installs nothing)

What it installs, and where: every command but help first makes sure there is a virtual
environment in ``.venv`` next to this file (or in the directory POSTKIT_DEV_VENV names) and that
postkit (the distribution ``fastapi-postkit``) is installed in it, editable, with its test, lint,
docs and server extras: pytest, ruff, mypy, mkdocs with its plugins, uvicorn, gunicorn, nox and
the rest pyproject.toml lists. The first run creates the environment and installs; later runs
reinstall only when pyproject.toml changes. Every command then runs that environment's tools, so
nothing needs to be on PATH or installed globally. Sessions run by ``nox`` build their own
environments under ``.nox/`` as noxfile.py says (``tests-3.X`` needs that Python on PATH).
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
COMMANDS = {"serve", "test", "check", "docs", "nox", "bench"}
DOCS_ADDRESS = "127.0.0.1:8001"  # beside `serve` on 8000; a --dev-addr given after it wins


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
    remove_old_distribution()
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "-e", f".[{EXTRAS}]"],
        check=True,
        cwd=ROOT,
    )
    stamp.write_text(wanted)


def remove_old_distribution() -> None:
    """Uninstall the distribution named `postkit` that environments made before the rename hold.

    It owns the same `postkit` command as `fastapi-postkit`, so it goes before the install (after,
    uninstalling it would delete the new command) and its metadata would still answer for postkit.
    """
    probe = "import importlib.metadata as m; m.distribution('postkit')"
    if subprocess.run([str(PYTHON), "-c", probe], capture_output=True).returncode == 0:
        uninstall = [str(PYTHON), "-m", "pip", "uninstall", "--quiet", "--yes", "postkit"]
        subprocess.run(uninstall, check=True)


def run(*args: str, cwd: Path = ROOT) -> int:
    return subprocess.run([str(PYTHON), "-m", *args], cwd=cwd).returncode


def docs(rest: list[str]) -> int:
    if rest[:1] == ["serve"]:
        return run("mkdocs", "serve", "--dev-addr", DOCS_ADDRESS, *rest[1:])
    return run("mkdocs", "build", "--strict", "--site-dir", "site", *rest)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command not in COMMANDS:
        print(__doc__)
        return 0 if command in {"help", "-h", "--help"} else 2
    ensure_environment()
    if command == "test":
        return run("pytest", *rest)
    if command == "check":
        return run("ruff", "check", ".") or run("ruff", "format", "--check", ".") or run("mypy")
    if command == "docs":
        return docs(rest)
    if command == "nox":
        return run("nox", *rest)
    if command == "bench":
        bench = [str(PYTHON), str(ROOT / "bench" / "run.py"), *rest]
        return subprocess.run(bench, cwd=ROOT).returncode
    example = ROOT / "examples" / "socialapp"
    port = os.environ.get("PORT", "8000")
    return run("uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", port, *rest, cwd=example)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
