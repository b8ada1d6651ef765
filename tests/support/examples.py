"""Import a Python file by its path: the docs' samples (docs/examples) and other loose files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.support.paths import DOCS_EXAMPLES


def load_module(path: Path, name: str) -> ModuleType:
    """Execute the file at ``path`` as a new module called ``name`` (registered in sys.modules,
    so dataclasses and pickling inside it work)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_example(name: str) -> ModuleType:
    """Import ``docs/examples/<name>.py`` (the files the docs pages include), once per run."""
    module_name = f"postkit_docs_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    return load_module(DOCS_EXAMPLES / f"{name}.py", module_name)
