"""The example's deployment recipes, checked as far as this machine allows (no Docker engine).

gunicorn runs with two uvicorn workers, on SQLite and on PostgreSQL, exactly as the systemd unit
and the Dockerfile start it, serves real requests, and nginx (Debian's) proxies to it with the
site file from the repository. Compose files and the Dockerfile are parsed and their wiring
asserted.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.api import TEST_SECRET
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
    table_names,
)
from tests.support.node import npm_package, require_node
from tests.support.paths import EXAMPLE_DIR
from tests.support.ports import free_port
from tests.support.servers import LiveProcess, clean_env, live_process

UNIT = EXAMPLE_DIR / "deploy" / "postkit-socialapp.service"
NGINX_SITE = EXAMPLE_DIR / "deploy" / "nginx" / "socialapp.conf"
BIN = Path(sys.executable).parent
DOCKERFILE_LINTER = "dockerfile-utils@0.16.3"


def require_tool(name: str) -> str:
    """The path of a system tool; a skip locally, a failure under CI (which installs it)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is not installed; .ci/run installs it", pytrace=False)
    pytest.skip(f"{name} is not installed (apt-get install {name})")


# --- Parsing the recipes ------------------------------------------------------------------------


def unit_directives(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values...]}} (keys may repeat, e.g. Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def procfile() -> dict[str, str]:
    entries = {}
    for line in (EXAMPLE_DIR / "Procfile").read_text().splitlines():
        if line.strip():
            kind, _, command = line.partition(":")
            entries[kind.strip()] = command.strip()
    return entries


@dataclass
class Instruction:
    name: str
    argument: str


def dockerfile_instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in (EXAMPLE_DIR / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        name, _, argument = pending.partition(" ")
        instructions.append(Instruction(name.upper(), argument.strip()))
        pending = ""
    return instructions


def exec_form(argument: str) -> list[str]:
    """The argv of a JSON ("exec form") CMD/HEALTHCHECK argument."""
    argv = json.loads(argument)
    assert isinstance(argv, list)
    return [str(part) for part in argv]


def server_argv() -> list[str]:
    """The command the systemd unit runs, with this environment's gunicorn."""
    (exec_start,) = unit_directives()["Service"]["ExecStart"]
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "gunicorn"
    return [str(BIN / "gunicorn"), *argv[1:]]


def test_unit_procfile_and_dockerfile_start_the_same_server() -> None:
    unit_argv = shlex.split(unit_directives()["Service"]["ExecStart"][0])
    web = shlex.split(procfile()["web"])
    (cmd,) = [i for i in dockerfile_instructions() if i.name == "CMD"]
    docker_argv = exec_form(cmd.argument)
    assert unit_argv[1:] == web[1:] == docker_argv[1:] == ["-c", "gunicorn.conf.py", "app.main:app"]
    assert {Path(unit_argv[0]).name, web[0], docker_argv[0]} == {"gunicorn"}


def test_systemd_unit() -> None:
    unit = unit_directives()
    service = unit["Service"]
    assert service["User"] == ["socialapp"]
    assert service["WorkingDirectory"][0].endswith("/examples/socialapp")
    assert service["Type"] == ["notify"]  # gunicorn tells systemd when it is ready
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["/etc/socialapp/env"]
    environment = dict(value.split("=", 1) for value in service["Environment"])
    assert environment["ENVIRONMENT"] == "production"
    assert environment["HOST"] == "127.0.0.1"  # only nginx reaches gunicorn
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "postgresql.service" in unit["Unit"]["After"][0]


def test_procfile_release_step_migrates(tmp_path: Path) -> None:
    database = tmp_path / "release.db"
    argv = shlex.split(procfile()["release"])
    assert argv[0] == "python"
    result = subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=EXAMPLE_DIR,
        env=clean_env(DATABASE_URL=f"sqlite:///{database}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"SQLite database at {database}" in result.stderr
    url = f"sqlite+aiosqlite:///{database}"
    assert {"postkit_users", "postkit_posts", "socialapp_bookmarks"} <= table_names(url)


# --- gunicorn with two uvicorn workers on PostgreSQL -------------------------------------------


@dataclass
class Deployed:
    server: LiveProcess
    port: int
    database_url: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """gunicorn started as the systemd unit starts it, on a fresh database of each kind."""
    workdir = tmp_path_factory.mktemp("gunicorn")
    if request.param == "postgresql":
        require_postgres("gunicorn deployment test")
        database_url = create_postgres_database("socialapp_deploy")
    else:
        database_url = f"sqlite:///{workdir / 'socialapp.db'}"
    port = free_port()
    unit_env = dict(value.split("=", 1) for value in unit_directives()["Service"]["Environment"])
    assert unit_env["PORT"] == "8000"
    unit_env["PORT"] = str(port)
    env = clean_env(
        **unit_env,
        # What /etc/socialapp/env (EnvironmentFile) holds on a server:
        DATABASE_URL=database_url,
        SECRET_KEY=TEST_SECRET,
        BCRYPT_ROUNDS="4",
    )
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    try:
        with live_process(
            server_argv(), cwd=EXAMPLE_DIR, env=env, log=workdir / "gunicorn.log"
        ) as server:
            server.wait_http(f"http://127.0.0.1:{port}/health")
            yield Deployed(server=server, port=port, database_url=database_url)
    finally:
        if request.param == "postgresql":
            drop_postgres_database(database_url)


def register_and_login(base: str, name: str) -> dict[str, str]:
    email = f"{name}@example.com"
    created = httpx.post(f"{base}/users", json={"email": email, "password": "a long password"})
    assert created.status_code == 201, created.text
    login = httpx.post(f"{base}/login", data={"username": email, "password": "a long password"})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def exercise_api(base: str, prefix: str) -> None:
    """Register, log in, post, list, vote and bookmark through ``base``."""
    alice = register_and_login(base, f"{prefix}_alice")
    bob = register_and_login(base, f"{prefix}_bob")
    created = httpx.post(
        f"{base}/posts", json={"title": f"{prefix} post", "content": "served"}, headers=alice
    )
    assert created.status_code == 201, created.text
    post_id = created.json()["id"]
    # Many requests, so both workers serve some; tokens issued by one verify in the other.
    for _ in range(6):
        feed = httpx.get(f"{base}/posts", params={"search": prefix}, headers=bob)
        assert feed.status_code == 200, feed.text
        assert [p["id"] for p in feed.json()] == [post_id]
    vote = httpx.post(f"{base}/vote", json={"post_id": post_id, "dir": 1}, headers=bob)
    assert vote.status_code == 201, vote.text
    assert httpx.get(f"{base}/posts/{post_id}", headers=bob).json()["votes"] == 1
    assert httpx.put(f"{base}/bookmarks/{post_id}", headers=bob).status_code == 201


@pytest.mark.slow
def test_gunicorn_serves_the_api_with_two_workers(deployed: Deployed) -> None:
    exercise_api(deployed.base, "gunicorn")
    log = deployed.server.log
    assert len(re.findall(r"Booting worker with pid", log)) == 2, log
    assert "uvicorn_worker.UvicornWorker" in log
    assert "migrations applied" in log
    # The master migrated once, before the workers started; the workers did not.
    assert log.count("migrations applied") == 1, log
    assert {"postkit_users", "socialapp_bookmarks"} <= table_names(deployed.database_url)


@pytest.mark.slow
def test_docker_healthcheck_command(deployed: Deployed) -> None:
    (healthcheck,) = [i for i in dockerfile_instructions() if i.name == "HEALTHCHECK"]
    options, _, command = healthcheck.argument.partition("CMD ")
    assert "--interval" in options
    argv = exec_form(command)
    assert argv[0] == "python"
    run = [sys.executable, *argv[1:]]
    healthy = subprocess.run(run, env=clean_env(PORT=str(deployed.port)), timeout=30)
    assert healthy.returncode == 0
    unhealthy = subprocess.run(
        run, env=clean_env(PORT=str(free_port())), capture_output=True, timeout=30
    )
    assert unhealthy.returncode != 0


# --- nginx in front ----------------------------------------------------------------------------


def nginx_config(tmp: Path, *, app_port: int, listen_port: int) -> Path:
    """The repository's site file with test ports, wrapped in a minimal nginx.conf."""
    site = NGINX_SITE.read_text()
    replacements = [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};"),
        ("listen 80;", f"listen 127.0.0.1:{listen_port};"),
        ("listen [::]:80;", ""),
    ]
    for old, new in replacements:
        assert site.count(old) == 1, f"{NGINX_SITE.name} no longer contains {old!r}"
        site = site.replace(old, new)
    (tmp / "socialapp.conf").write_text(site)
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / name).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/socialapp.conf;
}}
"""
    )
    return conf


@pytest.mark.slow
def test_nginx_site_proxies_to_gunicorn(deployed: Deployed, tmp_path: Path) -> None:
    nginx = require_tool("nginx")
    listen_port = free_port()
    conf = nginx_config(tmp_path, app_port=deployed.port, listen_port=listen_port)
    checked = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr

    # -e: the start-up error log too, so nginx never touches /var/log as an unprivileged user.
    argv = [nginx, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
    argv += ["-g", "daemon off;"]
    with live_process(argv, cwd=tmp_path, env=clean_env(), log=tmp_path / "nginx.out") as proxy:
        base = f"http://127.0.0.1:{listen_port}"
        health = proxy.wait_http(f"{base}/health?probe=nginx")
        assert health.status_code == 200, health.text
        assert health.json() == {"status": "ok", "database": "ok"}
        exercise_api(base, "nginx")
        # gunicorn trusts nginx's X-Forwarded-For, so the app sees the client's address.
        forwarded = httpx.get(
            f"{base}/health?probe=forwarded", headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert forwarded.status_code == 200
        too_big = httpx.post(f"{base}/posts", content=b"x" * (2 * 1024 * 1024))
        assert too_big.status_code == 413  # client_max_body_size, before gunicorn
    assert re.search(r"203\.0\.113\.9:\d+ - \"GET /health\?probe=forwarded", deployed.server.log)
    assert "probe=nginx" in (tmp_path / "access.log").read_text()


# --- Docker and compose ------------------------------------------------------------------------


def test_dockerfile_layers() -> None:
    instructions = dockerfile_instructions()
    names = [i.name for i in instructions]
    (base,) = [i.argument for i in instructions if i.name == "FROM"]
    assert re.fullmatch(r"python:3\.\d+-slim", base), base
    users = [i.argument for i in instructions if i.name == "USER"]
    assert users, "the image must not run as root"
    assert users[-1] not in ("root", "0"), users
    assert names.index("USER") < names.index("CMD")
    assert "HEALTHCHECK" in names

    copies = [(index, i.argument) for index, i in enumerate(instructions) if i.name == "COPY"]
    install = next(
        index
        for index, i in enumerate(instructions)
        if i.name == "RUN" and "pip install" in i.argument
    )
    app_copy = next(index for index, arg in copies if arg.startswith("examples/socialapp/ "))
    # Dependencies are installed before the app's code is copied: code changes keep the layer.
    assert install < app_copy
    before_install = [arg for index, arg in copies if index < install]
    assert all(
        "requirements.txt" in arg or not arg.startswith("examples/") for arg in before_install
    )
    assert any("requirements.txt" in arg for arg in before_install)

    # The paths it copies exist in the build context (the repository root).
    root = EXAMPLE_DIR.parent.parent
    for _, argument in copies:
        *sources, _ = argument.split()
        for source in sources:
            assert (root / source).exists(), source
    # The requirements' `../..` resolves to where postkit's source is copied.
    (workdir,) = [i.argument for i in instructions if i.name == "WORKDIR"]
    assert (Path(workdir) / "../..").resolve() == Path("/srv/socialapp")
    assert any(arg.endswith(" /srv/socialapp/") and "pyproject.toml" in arg for _, arg in copies)
    ignore = (EXAMPLE_DIR / "Dockerfile.dockerignore").read_text().split()
    assert "**/.env" in ignore
    assert "**/.venv" in ignore


def load_compose(name: str) -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLE_DIR / name).read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("name", ["compose.yaml", "compose.prod.yaml"])
def test_compose_wiring(name: str) -> None:
    services = load_compose(name)["services"]
    assert set(services) == {"db", "migrate", "app"}
    db, migrate, app = services["db"], services["migrate"], services["app"]

    assert db["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "db-data:/var/lib/postgresql/data" in db["volumes"]

    for service in (migrate, app):
        assert service["build"] == {
            "context": "../..",
            "dockerfile": "examples/socialapp/Dockerfile",
        }
        assert service["depends_on"]["db"] == {"condition": "service_healthy"}
        url = service["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql://")
        assert "@db:5432/" in url
        assert service["environment"]["SECRET_KEY"]
    # Migrations run once, before the app starts; the app does not migrate again.
    assert migrate["command"] == ["python", "-m", "app.migrate"]
    assert app["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert app["environment"]["MIGRATE_ON_STARTUP"] == "false"
    assert app["ports"] == ["127.0.0.1:8000:8000"]
    assert (EXAMPLE_DIR / app["build"]["context"] / app["build"]["dockerfile"]).is_file()


def test_production_compose_takes_secrets_from_the_environment() -> None:
    services = load_compose("compose.prod.yaml")["services"]
    app = services["app"]
    assert app["environment"]["ENVIRONMENT"] == "production"
    assert app["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in services["db"]["environment"]["POSTGRES_PASSWORD"]
    assert app["restart"] == services["db"]["restart"] == "unless-stopped"
    development = load_compose("compose.yaml")["services"]["app"]["environment"]
    assert development["ENVIRONMENT"] == "development"


@pytest.mark.slow
def test_dockerfile_dependency_layer_installs_postkit(tmp_path: Path) -> None:
    """Replay the Dockerfile's WORKDIR/COPY steps up to its `pip install` in a staging root and
    run that install (dry run, no dependencies): `../..` must find the postkit copied there."""
    root = EXAMPLE_DIR.parent.parent
    workdir = Path("/")
    install = None
    for instruction in dockerfile_instructions():
        if instruction.name == "WORKDIR":
            workdir = Path(instruction.argument)
            (tmp_path / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)
        elif instruction.name == "COPY":
            *sources, destination = instruction.argument.split()
            target = tmp_path / (workdir / destination).relative_to("/")
            for source in sources:
                origin = root / source
                if origin.is_dir():
                    into = target if not destination.endswith("/") else target / origin.name
                    shutil.copytree(origin, into, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif instruction.name == "RUN" and "pip install" in instruction.argument:
            install = shlex.split(instruction.argument)
            break
    assert install is not None
    assert install[:2] == ["pip", "install"]
    dry_run = ["--dry-run", "--no-deps"]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", *dry_run, *install[2:]],
        cwd=tmp_path / workdir.relative_to("/"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Would install .*postkit-\d", result.stdout), result.stdout


@pytest.mark.slow
def test_dockerfile_passes_a_linter() -> None:
    """dockerfile-utils (npm; the parser behind editors' Dockerfile support) finds nothing."""
    node, _ = require_node()
    package = npm_package(DOCKERFILE_LINTER)
    cli = package / "bin" / "dockerfile-utils"
    result = subprocess.run(
        [node, str(cli), "lint", str(EXAMPLE_DIR / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
