"""Griffe extension: render the Sphinx markup in postkit's docstrings as Markdown.

postkit's docstrings use reStructuredText conventions (``:class:`~postkit.PostKit``` roles,
``::`` before literal blocks) that read well in editors and ``help()``; mkdocstrings renders
Markdown. This rewrites the roles as inline code and drops the ``::`` markers, leaving the
indented block as a code block. Configured in mkdocs.yml under the Python handler's extensions.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def to_markdown(text: str) -> str:
    """Sphinx roles become inline code; ``::`` literal-block markers are removed."""
    text = ROLE.sub(_role, text)
    text = re.sub(r"(?m)^[ \t]*::[ \t]*$", "", text)  # a line that is only "::"
    return re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", text)  # "Example::" -> "Example:"


class SphinxMarkup(griffe.Extension):
    """Rewrite every docstring once the object tree is built."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
