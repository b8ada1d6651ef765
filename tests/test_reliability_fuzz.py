"""Schema fuzzing: schemathesis drives every operation of the app's own OpenAPI document against a
real server, authenticated, on SQLite and on PostgreSQL.

For each generated request: no 5xx, the status code is one the document lists for the operation,
and the body and headers conform to the documented schema. Operations that end sessions run with
a throwaway login, so the main token stays valid for the rest of the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from conftest import create_postgres_database, drop_postgres_database
from hypothesis import HealthCheck, settings
from reliability_support import (
    PASSWORD,
    Account,
    Server,
    free_port,
    register,
    serve,
    server_env,
    uvicorn_command,
)
from schemathesis import checks as st_checks

from postkit.migrations import upgrade

EXAMPLES_PER_OPERATION = 40
# Operations that revoke the caller's tokens or change the account: run with a throwaway login.
SESSION_ENDING = {("POST", "/logout"), ("POST", "/logout/all"), ("PATCH", "/users/me")}


class FuzzTarget:
    """The server under test and the credentials the cases use."""

    def __init__(self, server: Server, main: Account, spare: Account) -> None:
        self.server = server
        self.main = main
        self.spare = spare

    def headers_for(self, method: str, path: str) -> dict[str, str]:
        if (method.upper(), path) not in SESSION_ENDING:
            return self.main.headers
        response = httpx.post(
            f"{self.server.url}/login",
            data={"username": f"{self.spare.username}@example.com", "password": PASSWORD},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _seed(url: str) -> tuple[Account, Account]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        main = await register(http)
        spare = await register(http)
        for i in range(3):
            created = await http.post(
                "/posts", json={"title": f"seed {i}", "content": "x"}, headers=main.headers
            )
            assert created.status_code == 201, created.text
        return main, spare


@pytest.fixture(scope="module")
def fuzz_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        yield url
        return
    url = create_postgres_database("postkit_fuzz")
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="module")
def fuzz_target(
    fuzz_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    port = free_port()
    # The harness logs in before every session-ending case, all from one address.
    env = server_env(
        fuzz_database, login_max_failures=100_000, rate_limit_login="off", database_pool_size=3
    )
    log_dir: Path = tmp_path_factory.mktemp("fuzz-logs")
    with serve(uvicorn_command(port), env=env, log_dir=log_dir, port=port) as server:
        main, spare = asyncio.run(_seed(server.url))
        yield FuzzTarget(server, main, spare)
        assert "Traceback" not in server.log, server.log[-6000:]


def _documented_schema() -> dict[str, object]:
    """The OpenAPI document of the app the server runs, built in-process (no database needed).

    (Built at collection rather than fetched from the server because schemathesis's lazy
    ``from_fixture`` loader does not work with pytest 9.)
    """
    from fastapi import FastAPI

    from postkit import PostKit, PostKitSettings

    kit = PostKit(
        PostKitSettings(  # type: ignore[call-arg]
            _env_file=None,
            database_url="sqlite+aiosqlite:///:memory:",
            secret_key="x" * 48,
            discover_plugins=False,
        )
    )
    app = FastAPI()
    app.include_router(kit.router)
    return app.openapi()


schema = schemathesis.openapi.from_dict(_documented_schema())

# Checks that judge the application against its document. Left out: positive_data_acceptance
# (schema-valid data is legitimately refused by state: a duplicate email is 409, an unknown post
# 404), and the stateful checks that need links between operations.
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
    st_checks.negative_data_rejection,
    st_checks.missing_required_header,
    st_checks.ignored_auth,
]


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
