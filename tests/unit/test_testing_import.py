"""postkit.testing is opt-in: importing postkit never imports pytest, and importing the plugin
only defines things."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_importing_postkit_does_not_import_pytest(tmp_path: Path) -> None:
    result = run_python(
        "import sys, postkit, postkit.migrations, postkit.docs\n"
        "print(sorted(m for m in ('pytest', 'pytest_asyncio', 'postkit.testing', 'httpx',"
        " 'openapi_ui_bundles') if m in sys.modules))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_importing_the_plugin_has_no_side_effects(tmp_path: Path) -> None:
    result = run_python(
        "import os, logging, threading\n"
        "before = dict(os.environ)\n"
        "import postkit.testing as t\n"
        "assert dict(os.environ) == before\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert not logging.getLogger('postkit').handlers\n"
        "print(callable(t.pytest_addoption), sorted(os.listdir('.')))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True []"
