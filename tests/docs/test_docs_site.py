"""The documentation site: it builds strictly, its generated parts match the code, its samples
run, and it renders in a real browser (as does the reference app's offline /docs page)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from postkit import PostKitSettings
from postkit.errors import ErrorCode, error_classes
from tests.support.examples import load_module
from tests.support.paths import EXAMPLE_DIR, ROOT
from tests.support.ports import free_port
from tests.support.servers import clean_env, live_process

pytestmark = pytest.mark.slow  # mkdocs builds, real servers and Chromium

DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with ``mkdocs build --strict`` (any warning fails the build)."""
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site_dir


def page_text(site: Path, page: str) -> str:
    """A built page's visible text, roughly: tags dropped, entities decoded."""
    raw = (site / page / "index.html").read_text() if page else (site / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def settings_table_hook() -> ModuleType:
    return load_module(DOCS / "hooks" / "settings_table.py", "settings_table")


def test_site_has_every_page(site: Path) -> None:
    for page in (
        "getting-started",
        "configuration",
        "authentication",
        "posts-and-votes",
        "hooks",
        "migrations",
        "deployment",
        "testing",
        "reference",
        "benchmarks",
        "changelog",
        "errors",
        "host-code",
    ):
        assert (site / page / "index.html").is_file(), page
    # Included files are really included, not left as snippet markers.
    for page in ("getting-started", "deployment", "testing", "changelog", "configuration"):
        assert "--8<--" not in page_text(site, page), page
    assert "kit = PostKit(PostKitSettings(" in page_text(site, "getting-started")
    assert 'worker_class = "uvicorn_worker.UvicornWorker"' in page_text(site, "deployment")
    assert "## [Unreleased]" not in page_text(site, "changelog")  # rendered as a heading
    assert "Unreleased" in page_text(site, "changelog")


def test_configuration_page_lists_every_setting(site: Path) -> None:
    source = (DOCS / "configuration.md").read_text()
    hook = settings_table_hook()
    assert hook.MARKER in source
    text = page_text(site, "configuration")
    for name, info in PostKitSettings.model_fields.items():
        env = f"POSTKIT_{name.upper()}"
        assert env in text, env
        assert env == hook.env_name(name)
        row = next(line for line in hook.settings_table().splitlines() if f"`{env}`" in line)
        default = hook.default_text(info).replace("`", "")
        assert default in text, (name, default)
        assert (info.description or "").split("`")[0] in row
    # Exactly the model's fields: one row each, none left over from an older version.
    rows = [line for line in hook.settings_table().splitlines() if line.startswith("| `")]
    assert len(rows) == len(PostKitSettings.model_fields)


def test_errors_page_lists_every_error(site: Path) -> None:
    assert "<!-- postkit-errors-table -->" in (DOCS / "errors.md").read_text()
    raw = (site / "errors" / "index.html").read_text()
    rows = [
        html.unescape(re.sub(r"<[^>]+>", " ", row))
        for row in re.findall(r"<tr>.*?</tr>", raw, re.S)
    ]
    classes = error_classes()
    assert {cls.__name__ for cls in classes} >= {"PostNotFound", "InvalidToken", "AlreadyVoted"}
    for cls in classes:
        row = next(row.split() for row in rows if row.split()[:1] == [cls.__name__])
        text = " ".join(row)
        assert str(cls.status_code) in row, row
        assert cls.code in row, row
        assert cls.message in text, row
    # Every code postkit has is raised by some class: none is documented without one.
    raised = {cls.code for cls in classes} | {ErrorCode.VALIDATION_ERROR.value}
    assert raised == {code.value for code in ErrorCode}


def test_api_reference_is_generated(site: Path) -> None:
    raw = (site / "reference" / "index.html").read_text()
    for anchor in (
        "postkit.PostKit",
        "postkit.PostKit.lifespan",
        "postkit.PostKitSettings",
        "postkit.errors.PostKitError",
        "postkit.services.posts.Posts.find",
        "postkit.services.votes.Votes.cast",
        "postkit.services.accounts.Accounts.register",
        "postkit.services.sessions.Sessions.authenticate",
        "postkit.hookspecs.validate_post",
        "postkit.migrations.upgrade",
    ):
        assert f'id="{anchor}"' in raw, anchor
    # The docstrings' Sphinx markup is rendered (docs/hooks/griffe_sphinx_markup.py), not shown.
    text = page_text(site, "reference")
    assert ":class:" not in text
    assert "\n::\n" not in text


def test_getting_started_runs_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "getting_started_app:app", "--app-dir", str(EXAMPLES)]
    argv += ["--port", str(port)]
    env = clean_env(POSTKIT_BCRYPT_ROUNDS="4")
    with live_process(argv, cwd=tmp_path, env=env, log=tmp_path / "app.log") as server:
        base = f"http://127.0.0.1:{port}"
        server.wait_http(f"{base}/docs")
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "getting_started_client.py"), base],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert client.returncode == 0, client.stderr + server.log
    assert re.search(r"1 point\(s\)  'Hello, feed' by user_\w+", client.stdout), client.stdout
    assert re.search(r"Hello, user_\w+!", client.stdout), client.stdout
    assert (tmp_path / "feed.db").is_file()  # auto_migrate created the database where it said


def test_testing_page_sample_passes(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(EXAMPLES),
            str(EXAMPLES / "test_host_app.py"),
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


# --- Rendering in headless Chromium ------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("Chromium is not installed; .ci/run installs it", pytrace=False)
    pytest.skip("Chromium is not installed (apt-get install chromium)")


def render(url: str, profile: Path) -> str:
    """The DOM of ``url`` after its scripts ran, from headless Chromium."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def served_site(site: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(site)]
    with live_process(argv, cwd=tmp_path, env=clean_env(), log=tmp_path / "http.log") as server:
        server.wait_http(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}"


def test_site_renders_in_chromium(served_site: str, tmp_path: Path) -> None:
    home = render(f"{served_site}/", tmp_path / "profile")
    assert "<title>postkit</title>" in home
    assert "Posts, votes and accounts for FastAPI apps" in home
    assert 'class="md-nav' in home  # Material's navigation was rendered
    configuration = render(f"{served_site}/configuration/", tmp_path / "profile")
    assert "POSTKIT_SECRET_KEY" in configuration
    assert "<table>" in configuration


def test_reference_app_docs_render_offline_in_chromium(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--app-dir", str(EXAMPLE_DIR)]
    argv += ["--port", str(port)]
    with live_process(argv, cwd=tmp_path, env=clean_env(), log=tmp_path / "app.log") as server:
        server.wait_http(f"http://127.0.0.1:{port}/health")
        dom = render(f"http://127.0.0.1:{port}/docs", tmp_path / "profile")
    # Swagger UI ran (from the app's own static files) and rendered the operations.
    assert 'class="swagger-ui"' in dom
    paths = set(re.findall(r'data-path="([^"]+)"', dom))
    assert {"/posts", "/vote", "/login", "/users/me", "/bookmarks/{post_id}", "/health"} <= paths, (
        paths
    )
    assert "Authorize" in dom
