"""Schema fuzzing: schemathesis drives every operation of the reference app's OpenAPI document
(postkit's routes plus the app's bookmarks and health check) against a real server,
authenticated, on SQLite and on PostgreSQL, with every check schemathesis has but one.

For each generated request: no 5xx, the status code is one the document lists for the operation,
the body and headers conform to the documented schema, schema-invalid data is refused, a method
the document does not list answers 405 with an ``Allow`` header naming the path's methods.
Operations that end sessions run with a throwaway login, so the main token stays valid for the
rest of the run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.specs.openapi import checks as st_checks

from tests.support.api import TEST_PASSWORD, TEST_SECRET, TestUser, register
from tests.support.databases import empty_database
from tests.support.paths import EXAMPLE_DIR
from tests.support.ports import free_port
from tests.support.servers import LiveProcess, serve, server_env

pytestmark = pytest.mark.slow  # real server processes

EXAMPLES_PER_OPERATION = 25
# Mail on, so the password reset and verification routes are mounted and fuzzed too (the
# development mailer only logs).
MAIL_ENV = {"POSTKIT_EMAIL_ENABLED": "true", "POSTKIT_PUBLIC_BASE_URL": "http://127.0.0.1"}
# Operations that revoke the caller's tokens or change the account: run with a throwaway login.
SESSION_ENDING = {("POST", "/logout"), ("POST", "/logout/all"), ("PATCH", "/users/me")}


class FuzzTarget:
    """The server under test and the credentials the cases use."""

    def __init__(self, server: LiveProcess, main: TestUser, spare: TestUser) -> None:
        self.server = server
        self.main = main
        self.spare = spare

    def headers_for(self, method: str, path: str) -> dict[str, str]:
        if (method.upper(), path) not in SESSION_ENDING:
            return self.main.headers
        response = httpx.post(
            f"{self.server.url}/login",
            data={"username": f"{self.spare.username}@example.com", "password": TEST_PASSWORD},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _seed(url: str) -> tuple[TestUser, TestUser]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        main = await register(http)
        spare = await register(http)
        for i in range(3):
            created = await http.post(
                "/posts", json={"title": f"seed {i}", "content": "x"}, headers=main.headers
            )
            assert created.status_code == 201, created.text
            # A thread on each post, so the comment routes meet real comments and replies.
            said = await http.post(
                f"/posts/{created.json()['id']}/comments", json={"body": "x"}, headers=main.headers
            )
            assert said.status_code == 201, said.text
            reply = {"body": "y", "parent_id": said.json()["id"]}
            replied = await http.post(
                f"/posts/{created.json()['id']}/comments", json=reply, headers=spare.headers
            )
            assert replied.status_code == 201, replied.text
        return main, spare


@pytest.fixture(scope="module")
def fuzz_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database: the app migrates postkit's tables and its own at start-up."""
    with empty_database(backend, tmp_path_factory.mktemp("fuzz")) as url:
        yield url


def _reference_app_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(EXAMPLE_DIR),
        "app.main:create_app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_target(
    fuzz_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    port = free_port()
    env = server_env(
        fuzz_database, login_max_failures=100_000, rate_limit_login="off", database_pool_size=3
    )
    env.update(MAIL_ENV)
    env.update(DATABASE_URL=fuzz_database, SECRET_KEY=TEST_SECRET, BCRYPT_ROUNDS="4")
    log_dir: Path = tmp_path_factory.mktemp("fuzz-logs")
    with serve(_reference_app_command(port), env=env, log_dir=log_dir, port=port) as server:
        main, spare = asyncio.run(_seed(server.url))
        yield FuzzTarget(server, main, spare)
        assert "Traceback" not in server.log, server.log[-6000:]


def _documented_schema() -> dict[str, object]:
    """The OpenAPI document of the reference app the server runs, built in-process (no database
    is opened).

    (Built at collection rather than fetched from the server because schemathesis's lazy
    ``from_fixture`` loader does not work with pytest 9.)
    """
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        main = importlib.import_module("app.main")
        app_settings = importlib.import_module("app.settings")
    finally:
        sys.path.remove(str(EXAMPLE_DIR))
    settings = app_settings.AppSettings(
        _env_file=None, database_url="sqlite+aiosqlite:///:memory:", secret_key=TEST_SECRET
    )
    # postkit reads what the app does not pass from POSTKIT_* variables, as the server does.
    saved = {name: os.environ.get(name) for name in MAIL_ENV}
    os.environ.update(MAIL_ENV)
    try:
        document: dict[str, object] = main.create_app(settings).openapi()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return document


schema = schemathesis.openapi.from_dict(_documented_schema())

# Every check schemathesis registers, but positive_data_acceptance: schema-valid data is
# legitimately refused by state and by rules no schema can state (a duplicate email is 409, an
# unknown post 404, a plugin's banned word 422, a body id other than the path's 422).
CHECKS = [
    check
    for check in REGISTERED_CHECKS.get_all()
    if check is not st_checks.positive_data_acceptance
]
assert {check.__name__ for check in CHECKS} >= {  # type: ignore[union-attr]
    "not_a_server_error",
    "status_code_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_conforms_to_its_documentation(case, fuzz_target: FuzzTarget) -> None:
    headers = fuzz_target.headers_for(case.method, case.path)
    case.call_and_validate(
        base_url=fuzz_target.server.url, headers=headers, checks=CHECKS, timeout=30
    )
