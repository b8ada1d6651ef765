"""mkdocs hook: the Errors page's table, generated from postkit.errors.

docs/errors.md holds only the marker ``<!-- postkit-errors-table -->``; at build time this hook
replaces it with one row per error class (class, status, code, default message, when). The
table therefore cannot drift from the code; tests/docs/test_docs_site.py checks the built page.
"""

from __future__ import annotations

import inspect
from typing import Any

from postkit.errors import error_classes

MARKER = "<!-- postkit-errors-table -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def errors_table() -> str:
    """The Markdown table of every error postkit raises."""
    lines = [
        "| Exception | Status | `code` | Default `detail` | When |",
        "|---|---|---|---|---|",
    ]
    for cls in error_classes():
        when = _cell(inspect.getdoc(cls) or "")
        lines.append(
            f"| `{cls.__name__}` | {cls.status_code} | `{cls.code}` | {_cell(cls.message)} "
            f"| {when} |"
        )
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs event: put the generated table where the marker is."""
    if MARKER in markdown:
        return markdown.replace(MARKER, errors_table())
    return markdown
