"""`python dev.py`: every command the README and the docs name is listed, and works from a
fresh environment that only Python and pip made (no nox, no mkdocs on PATH)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.servers import clean_env

DEV = str(ROOT / "dev.py")
DOCUMENTED = re.compile(r"python dev\.py ((?:[a-z]+)(?: serve)?)")


def dev(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, DEV, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )


def documented_commands() -> set[str]:
    """`python dev.py X` (and `python dev.py docs serve`) as the README and docs/ write them."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {found for page in pages for found in DOCUMENTED.findall(page.read_text())}


def usage_lines(text: str) -> set[str]:
    """The commands the usage text lists, one per line: `python dev.py COMMAND [ARGS]  # ...`."""
    return {m.group(1) for m in re.finditer(r"^ {4}python dev\.py ([a-z]+(?: serve)?)", text, re.M)}


def test_help_lists_every_documented_command(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    usage = dev("help", env=clean_env(POSTKIT_DEV_VENV=str(venv)))
    assert usage.returncode == 0, usage.stderr
    listed = usage_lines(usage.stdout)
    documented = documented_commands()
    assert {"serve", "test", "check", "docs", "nox"} <= documented  # the README names them
    assert documented <= listed, documented - listed
    assert {"serve", "test", "check", "docs", "docs serve", "nox", "bench", "help"} <= listed
    # The usage text says where the environment lives, and help itself installs nothing.
    assert ".venv" in usage.stdout
    assert "POSTKIT_DEV_VENV" in usage.stdout
    assert not venv.exists()


def test_an_unknown_command_prints_the_usage_and_fails(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    answer = dev("biuld", env=clean_env(POSTKIT_DEV_VENV=str(venv)))
    assert answer.returncode == 2
    assert "python dev.py docs" in answer.stdout
    assert not venv.exists()


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose POSTKIT_DEV_VENV does not exist yet, and whose PATH holds no nox
    and no mkdocs: the first dev.py command creates the venv and installs everything in it."""
    base = tmp_path_factory.mktemp("dev-env")
    empty_bin = base / "bin"
    empty_bin.mkdir()
    env = clean_env(POSTKIT_DEV_VENV=str(base / "venv"), PATH=str(empty_bin))
    env.pop("VIRTUAL_ENV", None)
    first = dev("nox", "--version", env=env, timeout=1200)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "dev.py: creating" in first.stdout
    assert (base / "venv" / ".postkit-installed").is_file()
    return env


@pytest.mark.slow
def test_nox_sessions_run_through_the_dev_environment(fresh_env: dict[str, str]) -> None:
    listing = dev("nox", "-l", env=fresh_env)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    sessions = set(re.findall(r"^[*-] (\S+) ->", listing.stdout, re.M))
    # The sessions the README names, as `python dev.py nox -s ...` runs them.
    readme = (ROOT / "README.md").read_text()
    (named,) = re.findall(r"sessions `([^`]+)`", readme)
    assert set(named.split()) <= sessions
    assert "installing" not in listing.stdout  # the second command reuses the environment


@pytest.mark.slow
def test_docs_builds_the_site_strictly(fresh_env: dict[str, str], tmp_path: Path) -> None:
    site = tmp_path / "site"
    built = dev("docs", "--site-dir", str(site), env=fresh_env)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "pip install fastapi-postkit" in (site / "index.html").read_text()
    assert (site / "getting-started" / "index.html").is_file()

    # Strictly: a page with a broken link fails the build instead of warning.
    (tmp_path / "broken" / "docs").mkdir(parents=True)
    (tmp_path / "broken" / "docs" / "index.md").write_text("# Broken\n\n[gone](missing.md)\n")
    config = tmp_path / "broken" / "mkdocs.yml"
    config.write_text("site_name: broken\n")
    broken_site = str(tmp_path / "broken" / "site")
    failed = dev("docs", "--config-file", str(config), "--site-dir", broken_site, env=fresh_env)
    assert failed.returncode != 0
    assert "missing.md" in failed.stdout + failed.stderr


@pytest.fixture
def docs_server(fresh_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`python dev.py docs serve` on a free port; the whole process group stops afterwards
    (dev.py runs mkdocs as a child process)."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, DEV, "docs", "serve", "--dev-addr", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=fresh_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}/", log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_docs_serve_previews_the_site(docs_server: tuple[str, Path]) -> None:
    url, log = docs_server
    deadline = time.monotonic() + 120
    while True:
        try:
            page = httpx.get(url, timeout=2.0)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.3)
    assert page.status_code == 200
    assert "pip install fastapi-postkit" in page.text
