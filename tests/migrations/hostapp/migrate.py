"""Apply the host's composed history (its revisions and postkit's) from code.

``upgrade_composed_async`` runs on one connection inside one transaction and, on PostgreSQL,
holds postkit's advisory lock first: several workers starting together migrate one after the
other and all succeed. A database that postkit migrated on its own is adopted first.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from postkit.migrations import upgrade_composed_async

ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"


def host_alembic_config() -> Config:
    return Config(str(ALEMBIC_INI))


async def migrate(database_url: str, revision: str = "heads") -> None:
    """Upgrade every branch (the host's and postkit's) to ``revision``."""
    await upgrade_composed_async(host_alembic_config(), revision, url=database_url)
