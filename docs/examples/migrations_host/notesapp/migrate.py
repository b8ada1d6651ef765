"""The app's release step: bring the database to every head, whatever state it is in.

    DATABASE_URL=... python -m notesapp.migrate

Empty, at the app's own revisions, already composed, or first set up by postkit's
`auto_migrate`: one call handles them all (the last by adopting postkit's record).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic.config import Config

from postkit.migrations import upgrade_composed, upgrade_composed_async

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def migrate(database_url: str) -> None:
    """From synchronous code: a release step, a script."""
    upgrade_composed(Config(str(ALEMBIC_INI)), "heads", url=database_url)


async def migrate_async(database_url: str) -> None:
    """From inside an event loop: the app's lifespan, before it serves."""
    await upgrade_composed_async(Config(str(ALEMBIC_INI)), "heads", url=database_url)


if __name__ == "__main__":
    migrate(os.environ["DATABASE_URL"])
