"""Alembic environment of the reference app: postkit's tables and the app's, in one history.

Run by :func:`app.migrate.migrate` (which hands over an open connection) or by the ``alembic``
command (which connects to ``DATABASE_URL``). ``run_env`` compares postkit's models as well as
the app's and adopts a database that postkit once migrated on its own.
"""

from __future__ import annotations

from alembic import context

from app.models import metadata
from app.settings import AppSettings
from postkit.migrations import run_env

run_env(
    metadata, url=context.config.get_main_option("sqlalchemy.url") or AppSettings().database_url
)
