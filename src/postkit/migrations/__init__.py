"""postkit's bundled Alembic migrations and the functions that run them.

Standalone, postkit's history records itself in ``postkit_alembic_version`` (branch label
``postkit``), so it never collides with a host's own history in the same database:
``upgrade(url)`` is for scripts and the CLI, ``await upgrade_async(url)`` for code that already
runs an event loop (the kit's lifespan uses it when ``auto_migrate`` is set).

Composed into a host's history (``version_locations`` includes :data:`VERSION_LOCATION`), the
host's ``env.py`` is one call to :func:`run_env`, and :func:`upgrade_composed` (or
``alembic upgrade heads``) brings any database to the composed heads, adopting one that postkit
migrated on its own.

On PostgreSQL every run holds a transaction-scoped advisory lock, so workers that start
together migrate one at a time and all succeed.
"""

from __future__ import annotations

from postkit.migrations.composed import (
    HOST_VERSION_TABLE,
    POSTKIT_MARKER_TABLE,
    DatabaseHistory,
    adopt_standalone_history,
    inspect_history,
    run_env,
    upgrade_composed,
    upgrade_composed_async,
)
from postkit.migrations.runner import (
    BRANCH_LABEL,
    OPTIONAL_INDEXES,
    SCRIPT_LOCATION,
    VERSION_LOCATION,
    VERSION_TABLE,
    VERSIONS_DIR,
    alembic_config,
    downgrade,
    downgrade_async,
    migration_connection,
    run_alembic,
    upgrade,
    upgrade_async,
)

__all__ = [
    "BRANCH_LABEL",
    "HOST_VERSION_TABLE",
    "OPTIONAL_INDEXES",
    "POSTKIT_MARKER_TABLE",
    "SCRIPT_LOCATION",
    "VERSIONS_DIR",
    "VERSION_LOCATION",
    "VERSION_TABLE",
    "DatabaseHistory",
    "adopt_standalone_history",
    "alembic_config",
    "downgrade",
    "downgrade_async",
    "inspect_history",
    "migration_connection",
    "run_alembic",
    "run_env",
    "upgrade",
    "upgrade_async",
    "upgrade_composed",
    "upgrade_composed_async",
]
