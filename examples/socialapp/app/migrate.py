"""Apply the migrations: postkit's tables and the app's, in one composed Alembic history.

    python -m app.migrate   # the Procfile's release step and compose's migrate service

On PostgreSQL the run holds postkit's advisory lock, so several processes starting at once
migrate one after the other and all succeed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.settings import AppSettings, describe_database
from postkit.migrations import VERSION_LOCATION, run_alembic, upgrade_composed_async

APP_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = APP_DIR.parent / "alembic.ini"

logger = logging.getLogger("socialapp")


def alembic_config() -> Config:
    """The app's Alembic configuration: its own revisions plus postkit's (``alembic.ini``)."""
    config = Config(ALEMBIC_INI)
    # Set in code too, so the history is the same wherever the app is installed.
    config.set_main_option("script_location", str(APP_DIR / "migrations"))
    config.set_main_option("path_separator", "space")
    config.set_main_option(
        "version_locations", f"{APP_DIR / 'migrations' / 'versions'} {VERSION_LOCATION}"
    )
    return config


async def migrate_async(database_url: str, revision: str = "heads") -> None:
    """Upgrade the database to ``revision`` (every branch head by default).

    A database postkit migrated on its own (``postkit db upgrade``) is adopted first: its
    record moves into this history instead of postkit's tables being created again.
    """
    await upgrade_composed_async(alembic_config(), revision, url=database_url)


def migrate(database_url: str, revision: str = "heads") -> None:
    """Upgrade the database from synchronous code (scripts, gunicorn's master process)."""
    asyncio.run(migrate_async(database_url, revision))


async def downgrade_async(database_url: str, revision: str) -> None:
    """Revert to ``revision``, e.g. ``"socialapp@base"`` drops the app's tables only."""
    await run_alembic(database_url, command.downgrade, revision, config=alembic_config())


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = AppSettings()
    migrate(settings.database_url)
    logger.info("migrations applied (%s)", describe_database(settings))


if __name__ == "__main__":
    main()
