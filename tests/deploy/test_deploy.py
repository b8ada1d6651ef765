"""The example's deployment recipes, checked as far as this machine allows (no Docker engine).

gunicorn runs with two uvicorn workers, on SQLite and on PostgreSQL, exactly as the systemd unit
and the Dockerfile start it, serves real requests, and nginx (Debian's) proxies to it with the
site file from the repository. Compose files and the Dockerfile are parsed and their wiring
asserted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
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


def procfile_command(kind: str) -> tuple[dict[str, str], list[str]]:
    """A Procfile entry as the variables it assigns before its command, and the command."""
    argv = shlex.split(procfile()[kind])
    assignments: dict[str, str] = {}
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
        name, _, value = argv.pop(0).partition("=")
        assignments[name] = value
    return assignments, argv


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
    _, web = procfile_command("web")
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


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """The URL of a new, empty database of ``kind`` (sqlite or postgresql), dropped after."""
    if kind != "postgresql":
        yield f"sqlite:///{workdir / 'socialapp.db'}"
        return
    require_postgres("gunicorn deployment test")
    database_url = create_postgres_database("socialapp_deploy")
    try:
        yield database_url
    finally:
        drop_postgres_database(database_url)


# The per-network failure budget (100 by default) made small, so that the address checks below
# reach it in a few requests: the deployment files decide which address it is counted against.
SMALL_ADDRESS_BUDGET = {"POSTKIT_LOGIN_ADDRESS_MAX_FAILURES": "5"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """gunicorn started as the systemd unit starts it, on a fresh database of each kind."""
    workdir = tmp_path_factory.mktemp("gunicorn")
    with fresh_database(request.param, workdir) as database_url:
        yield from _serve_as_the_unit_does(workdir, database_url)


def _serve_as_the_unit_does(workdir: Path, database_url: str) -> Iterator[Deployed]:
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
        **SMALL_ADDRESS_BUDGET,
    )
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    with live_process(
        server_argv(), cwd=EXAMPLE_DIR, env=env, log=workdir / "gunicorn.log"
    ) as server:
        server.wait_http(f"http://127.0.0.1:{port}/health")
        yield Deployed(server=server, port=port, database_url=database_url)


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

    with nginx_in_front(tmp_path, app_port=deployed.port, listen_port=listen_port) as proxy:
        base = f"http://127.0.0.1:{listen_port}"
        health = proxy.wait_http(f"{base}/health?probe=nginx")
        assert health.status_code == 200, health.text
        assert health.json() == {"status": "ok", "database": "ok"}
        exercise_api(base, "nginx")
        # nginx replaces the client's X-Forwarded-For with the address it saw, and gunicorn
        # trusts nginx's: the app sees the client's real address (127.0.0.2), not its claim.
        with from_address("127.0.0.2") as client:
            forwarded = client.get(
                f"{base}/health?probe=forwarded", headers={"X-Forwarded-For": "203.0.113.9"}
            )
        assert forwarded.status_code == 200
        # Even a client on nginx's own address (which gunicorn trusts) cannot pass a claim on.
        local = httpx.get(f"{base}/health?probe=local", headers={"X-Forwarded-For": "203.0.113.9"})
        assert local.status_code == 200
        too_big = httpx.post(f"{base}/posts", content=b"x" * (2 * 1024 * 1024))
        assert too_big.status_code == 413  # client_max_body_size, before gunicorn
    log = deployed.server.log
    assert re.search(r"127\.0\.0\.2:\d+ - \"GET /health\?probe=forwarded", log), log
    assert re.search(r"127\.0\.0\.1:\d+ - \"GET /health\?probe=local", log), log
    assert "203.0.113.9" not in log
    assert "probe=nginx" in (tmp_path / "access.log").read_text()


@contextlib.contextmanager
def nginx_in_front(tmp: Path, *, app_port: int, listen_port: int) -> Iterator[LiveProcess]:
    """nginx with the repository's site file, on ``listen_port``, proxying to ``app_port``."""
    nginx = require_tool("nginx")
    conf = nginx_config(tmp, app_port=app_port, listen_port=listen_port)
    # -e: the start-up error log too, so nginx never touches /var/log as an unprivileged user.
    argv = [nginx, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")]
    argv += ["-g", "daemon off;"]
    with live_process(argv, cwd=tmp, env=clean_env(), log=tmp / "nginx.out") as proxy:
        yield proxy


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


# --- Client addresses: whose X-Forwarded-For each recipe believes ------------------------------
#
# Login throttling budgets failures per network (and per account). Each check below makes
# failed logins for fresh account names, so only the network budget can run out, and sends a
# made-up X-Forwarded-For with each. Clients connect from loopback addresses other than
# 127.0.0.1, which is what any client of nginx or of the container is: someone else.

ATTACKER = "127.0.0.2"
ANOTHER_ATTACKER = "127.0.0.4"
VICTIM = "127.0.0.3"


def from_address(source: str) -> httpx.Client:
    """An HTTP client whose connections come from ``source`` (a 127.x address)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30.0)


def fail_logins_until_refused(
    base: str, *, source: str, forwarded_for: Callable[[int], str], prefix: str
) -> int:
    """Failed logins from ``source`` until one is refused with 429; the number that failed."""
    with from_address(source) as client:
        for attempt in range(30):
            response = client.post(
                f"{base}/login",
                data={"username": f"{prefix}{attempt}@example.com", "password": "not it at all"},
                headers={"X-Forwarded-For": forwarded_for(attempt)},
            )
            if response.status_code == 429:
                assert response.json()["code"] == "TOO_MANY_ATTEMPTS", response.text
                assert int(response.headers["Retry-After"]) > 0
                return attempt
            assert response.status_code == 401, response.text
    raise AssertionError(f"30 failed logins from {source} were never refused")


def assert_counted_by_real_address(base: str, prefix: str) -> None:
    """The login budget follows the address the server in front saw, whatever a client writes."""
    # A new made-up address on every attempt does not buy a new budget.
    failures = fail_logins_until_refused(
        base, source=ATTACKER, forwarded_for=lambda i: f"198.51.100.{i + 1}", prefix=f"{prefix}a"
    )
    assert failures >= 1
    # Naming someone else's address spends the attacker's own budget, not theirs.
    victim = f"{prefix}_victim@example.com"
    created = httpx.post(f"{base}/users", json={"email": victim, "password": "a long password"})
    assert created.status_code == 201, created.text
    fail_logins_until_refused(
        base, source=ANOTHER_ATTACKER, forwarded_for=lambda i: VICTIM, prefix=f"{prefix}b"
    )
    with from_address(VICTIM) as client:
        login = client.post(
            f"{base}/login", data={"username": victim, "password": "a long password"}
        )
    assert login.status_code == 200, login.text


def test_nginx_passes_the_real_client_address_not_the_clients_claim(
    deployed: Deployed, tmp_path: Path
) -> None:
    listen_port = free_port()
    with nginx_in_front(tmp_path, app_port=deployed.port, listen_port=listen_port) as proxy:
        base = f"http://127.0.0.1:{listen_port}"
        proxy.wait_http(f"{base}/health")
        assert_counted_by_real_address(base, "viaproxy")


def dockerfile_env() -> dict[str, str]:
    """The variables the image sets (every ENV instruction, in order)."""
    env: dict[str, str] = {}
    for instruction in dockerfile_instructions():
        if instruction.name == "ENV":
            for item in shlex.split(instruction.argument):
                name, equals, value = item.partition("=")
                assert equals, f"ENV {instruction.argument}: use the NAME=value form"
                env[name] = value
    return env


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def container(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """The image's server as a process here (there is no Docker engine): the Dockerfile's CMD in
    its WORKDIR's app, with its ENV and what `docker run -e` adds."""
    workdir = tmp_path_factory.mktemp("container")
    (cmd,) = [i for i in dockerfile_instructions() if i.name == "CMD"]
    argv = exec_form(cmd.argument)
    assert argv[0] == "gunicorn"
    image_env = dockerfile_env()
    # Inside its own network namespace the container listens on every interface; here, on
    # loopback only. Nothing else differs from the image's settings.
    assert image_env["HOST"] == "0.0.0.0"  # noqa: S104
    port = free_port()
    with fresh_database(request.param, workdir) as database_url:
        run_options = {
            "DATABASE_URL": database_url,
            "SECRET_KEY": TEST_SECRET,
            "BCRYPT_ROUNDS": "4",
            **SMALL_ADDRESS_BUDGET,
        }
        env = clean_env(**{**image_env, "HOST": "127.0.0.1", "PORT": str(port), **run_options})
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        with live_process(
            [str(BIN / "gunicorn"), *argv[1:]],
            cwd=EXAMPLE_DIR,
            env=env,
            log=workdir / "gunicorn.log",
        ) as server:
            server.wait_http(f"http://127.0.0.1:{port}/health")
            yield Deployed(server=server, port=port, database_url=database_url)


def test_container_ignores_forwarded_headers_sent_straight_to_it(container: Deployed) -> None:
    assert_counted_by_real_address(container.base, "container")
    with from_address(ATTACKER) as client:
        client.get(
            f"{container.base}/health?probe=spoof", headers={"X-Forwarded-For": "203.0.113.9"}
        )
    assert re.search(r"127\.0\.0\.2:\d+ - \"GET /health\?probe=spoof", container.server.log)


def trusted_by_gunicorn(value: str) -> list[str]:
    """``value`` as gunicorn's forwarded_allow_ips setting parses (and validates) it."""
    from gunicorn.config import Config

    config = Config()
    config.set("forwarded_allow_ips", value)
    trusted = config.forwarded_allow_ips
    assert isinstance(trusted, list)
    return [str(item) for item in trusted]


def test_recipes_trust_only_the_proxy_in_front() -> None:
    unit_env = dict(value.split("=", 1) for value in unit_directives()["Service"]["Environment"])
    # systemd: nginx on this host, which connects to 127.0.0.1:8000 from 127.0.0.1.
    assert trusted_by_gunicorn(unit_env["FORWARDED_ALLOW_IPS"]) == ["127.0.0.1"]
    assert "server 127.0.0.1:8000;" in NGINX_SITE.read_text()
    # The image: only the container's own loopback unless the operator names its proxy.
    assert trusted_by_gunicorn(dockerfile_env()["FORWARDED_ALLOW_IPS"]) == ["127.0.0.1"]
    # nginx overwrites the header; the appending form would pass on what the client wrote.
    site = NGINX_SITE.read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site
    assert "$proxy_add_x_forwarded_for" not in site.replace("# ", "")


def test_gunicorn_config_defaults_to_the_local_proxy() -> None:
    env = clean_env()
    env.pop("FORWARDED_ALLOW_IPS", None)
    printed = subprocess.run(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--print-config", "app.main:app"],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert re.search(r"^forwarded_allow_ips\s+= \['127\.0\.0\.1'\]$", printed.stdout, re.M)


@pytest.mark.parametrize("name", ["compose.yaml", "compose.prod.yaml"])
def test_compose_trusts_only_its_networks_gateway(name: str) -> None:
    compose = load_compose(name)
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    subnet = ipaddress.ip_network(pool["subnet"])
    gateway = ipaddress.ip_address(pool["gateway"])
    assert subnet.is_private
    assert gateway in subnet
    services = compose["services"]
    # Every service is on that one network: nothing else reaches the app from the gateway.
    assert all("networks" not in service for service in services.values())
    app = services["app"]
    assert trusted_by_gunicorn(str(app["environment"]["FORWARDED_ALLOW_IPS"])) == [str(gateway)]
    # Published on the host's loopback only: clients elsewhere cannot come through the gateway.
    assert app["ports"] == ["127.0.0.1:8000:8000"]


def test_development_and_production_compose_networks_can_share_a_host() -> None:
    subnets = [
        ipaddress.ip_network(
            load_compose(name)["networks"]["default"]["ipam"]["config"][0]["subnet"]
        )
        for name in ("compose.yaml", "compose.prod.yaml")
    ]
    assert not subnets[0].overlaps(subnets[1])


HEROKU_ROUTER = "10.1.45.23"  # Heroku's router connects to a dyno from a private 10.x address


def procfile_trusted(platform_env: dict[str, str]) -> str:
    """FORWARDED_ALLOW_IPS as the Procfile's web command gets it, expanded by bash as Heroku
    runs it, with ``platform_env`` (config vars) set."""
    assignments, _ = procfile_command("web")
    line = procfile()["web"]
    command = line[: line.index(" gunicorn ")] + " printenv FORWARDED_ALLOW_IPS"
    env = clean_env(**platform_env)
    if "FORWARDED_ALLOW_IPS" not in platform_env:
        env.pop("FORWARDED_ALLOW_IPS", None)
    assert "FORWARDED_ALLOW_IPS" in assignments
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_procfile_trusts_herokus_router_range_unless_configured() -> None:
    assert trusted_by_gunicorn(procfile_trusted({})) == ["10.0.0.0/8"]
    # A platform whose proxy is elsewhere (Dokku: the Docker gateway) sets a config var.
    assert procfile_trusted({"FORWARDED_ALLOW_IPS": "172.17.0.1"}) == "172.17.0.1"


async def _client_seen(trusted: list[str], *, peer: str, forwarded_for: str) -> str:
    """The client address a uvicorn worker hands the app: uvicorn's own middleware, built from
    gunicorn's setting as uvicorn-worker builds it, around an app that echoes the address."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    async def echo_client(scope: Any, receive: Any, send: Any) -> None:
        body = scope["client"][0].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    app: Any = ProxyHeadersMiddleware(echo_client, trusted_hosts=trusted)
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/", headers={"X-Forwarded-For": forwarded_for})
    return response.text


@pytest.mark.parametrize(
    ("forwarded_for", "seen"),
    [
        # The router appends the address it saw to whatever the client sent.
        ("203.0.113.50", "203.0.113.50"),
        ("198.51.100.1, 203.0.113.50", "203.0.113.50"),
        ("10.9.9.9, 203.0.113.50", "203.0.113.50"),
        ("203.0.113.50, 10.0.0.1, 203.0.113.50", "203.0.113.50"),
    ],
)
async def test_heroku_counts_the_address_its_router_saw(forwarded_for: str, seen: str) -> None:
    trusted = trusted_by_gunicorn(procfile_trusted({}))
    assert await _client_seen(trusted, peer=HEROKU_ROUTER, forwarded_for=forwarded_for) == seen
    # From anything but the router the header means nothing.
    direct = await _client_seen(trusted, peer="192.0.2.7", forwarded_for=forwarded_for)
    assert direct == "192.0.2.7"


async def test_trusting_every_address_would_let_the_client_choose() -> None:
    """Why no recipe says "*": uvicorn then takes the leftmost entry, which the client wrote."""
    seen = await _client_seen(["*"], peer=HEROKU_ROUTER, forwarded_for="198.51.100.1, 203.0.113.50")
    assert seen == "198.51.100.1"


def test_procfile_web_command_ignores_forwarded_headers_from_others(tmp_path: Path) -> None:
    """The web line run by bash as the platform runs it: gunicorn gets the router's range, and a
    client that is not the router cannot choose its address."""
    port = free_port()
    env = clean_env(
        PORT=str(port),
        DATABASE_URL=f"sqlite:///{tmp_path / 'heroku.db'}",
        ENVIRONMENT="production",
        SECRET_KEY=TEST_SECRET,
        WEB_CONCURRENCY="1",
        LOG_LEVEL="debug",
    )
    env.pop("FORWARDED_ALLOW_IPS", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    argv = ["bash", "-c", procfile()["web"]]
    with live_process(argv, cwd=EXAMPLE_DIR, env=env, log=tmp_path / "web.log") as server:
        server.wait_http(f"http://127.0.0.1:{port}/health")
        spoofed = httpx.get(
            f"http://127.0.0.1:{port}/health?probe=heroku",
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert spoofed.status_code == 200
    log = server.log
    assert re.search(r"forwarded_allow_ips: \['10\.0\.0\.0/8'\]", log), log
    assert re.search(r"127\.0\.0\.1:\d+ - \"GET /health\?probe=heroku", log), log
    assert "203.0.113.9" not in log


def test_gunicorn_warns_when_told_to_trust_every_address(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        PORT=str(port),
        HOST="127.0.0.1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'star.db'}",
        WEB_CONCURRENCY="1",
        FORWARDED_ALLOW_IPS="*",
    )
    with live_process(server_argv(), cwd=EXAMPLE_DIR, env=env, log=tmp_path / "star.log") as server:
        server.wait_http(f"http://127.0.0.1:{port}/health")
    assert "FORWARDED_ALLOW_IPS=* lets every client choose the address" in server.log
