"""Where things are in the repository."""

from __future__ import annotations

from pathlib import Path

SUPPORT_DIR = Path(__file__).resolve().parent
TESTS_DIR = SUPPORT_DIR.parent
ROOT = TESTS_DIR.parent
DOCS_DIR = ROOT / "docs"
DOCS_EXAMPLES = DOCS_DIR / "examples"
EXAMPLE_DIR = ROOT / "examples" / "socialapp"
