"""mkdocs hook: the Configuration page's table of settings, generated from PostKitSettings.

docs/configuration.md holds only the marker ``<!-- postkit-settings-table -->``; at build time
this hook replaces it with one row per field of :class:`postkit.PostKitSettings` (name,
environment variable, type, default, allowed values, description). The table therefore cannot
drift from the code; tests/docs/test_docs_site.py checks the built page against the model.
"""

from __future__ import annotations

import typing
from datetime import timedelta
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from postkit import PostKitSettings

MARKER = "<!-- postkit-settings-table -->"


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    prefix = str(PostKitSettings.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(annotation))
    if annotation is timedelta:
        return "duration"
    if annotation is SecretStr:
        return "secret"
    args = typing.get_args(annotation)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if args and type(None) in args:
        return " or ".join(_type_name(arg) for arg in args if arg is not type(None)) + " (optional)"
    return getattr(annotation, "__name__", str(annotation))


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"`{seconds}` ({seconds // size} {unit})"
    return f"`{seconds}` seconds"


def default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == []:
        return "empty"
    return f"`{value}`"


def allowed_text(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"length ≥ {item.min_length}")
    return ", ".join(parts)


def settings_table() -> str:
    """The Markdown table of every setting."""
    lines = [
        "| Setting | Environment variable | Type | Default | Allowed | Description |",
        "|---|---|---|---|---|---|",
    ]
    for name, info in PostKitSettings.model_fields.items():
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| `{name}` | `{env_name(name)}` | {_type_name(info.annotation)} "
            f"| {default_text(info)} | {allowed_text(info)} | {description} |"
        )
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs event: put the generated table where the marker is."""
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_table())
    return markdown
