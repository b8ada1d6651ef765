"""Apply the host's composed history (its revisions and postkit's) from code.

``postkit.migrations.run_alembic`` runs any Alembic command on one connection inside one
transaction and, on PostgreSQL, holds postkit's advisory lock first: several workers starting
together migrate one after the other and all succeed. The host's ``env.py`` uses the connection
it is handed (``config.attributes["connection"]``).
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from postkit.migrations import run_alembic, upgrade_composed

ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"


def host_alembic_config() -> Config:
    return Config(str(ALEMBIC_INI))


async def migrate(database_url: str, revision: str = "heads") -> None:
    """Upgrade every branch (the host's and postkit's) to ``revision``, first adopting a
    database that postkit migrated on its own (``postkit db upgrade``)."""
    await run_alembic(database_url, upgrade_composed, revision, config=host_alembic_config())
