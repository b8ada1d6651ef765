"""Alembic environment for postkit's bundled history (standalone, in ``postkit_alembic_version``).

Run through :func:`postkit.migrations.run_alembic`, which hands over an open connection; run by the
``alembic`` command with ``sqlalchemy.url`` set, it opens its own connection.
"""

from __future__ import annotations

from typing import Any

from postkit.migrations import VERSION_TABLE, run_env
from postkit.models import metadata


def only_postkit_tables(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Compare only postkit's own tables: a host's tables may share the database."""
    if type_ == "table":
        return bool(name and name.startswith("postkit_"))
    table = getattr(obj, "table", None)
    return table is None or bool(table.name.startswith("postkit_"))


run_env(metadata, version_table=VERSION_TABLE, include_object=only_postkit_tables)
