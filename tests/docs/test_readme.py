"""The README tells the truth: its example is the tested sample, its commands exist."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.paths import ROOT

README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_integration_example_is_the_tested_sample() -> None:
    sample = (ROOT / "docs" / "examples" / "getting_started_app.py").read_text()
    body = sample.split('"""', 2)[2].lstrip("\n")  # without the module docstring
    (example,) = code_blocks("python")
    assert example == body


def test_quickstart_is_dev_py_commands() -> None:
    quickstart = README.split("## Quickstart", 1)[1]
    (block,) = re.findall(r"```console\n(.*?)```", quickstart, flags=re.S)
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == [
        "python dev.py serve",
        "python dev.py test",
        'python dev.py test -m "not slow"',
    ]
    usage = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "help"], capture_output=True, text=True, timeout=30
    )
    assert usage.returncode == 0
    for command in ("serve", "test"):
        assert f"python dev.py {command}" in usage.stdout
    assert 'python dev.py test -m "not slow"' in usage.stdout


def test_links_point_at_files() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if target.startswith("http"):
            continue
        assert (ROOT / target).exists(), target
