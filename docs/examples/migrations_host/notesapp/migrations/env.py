"""The app's Alembic environment: its history and postkit's, recorded in one version table.

`run_env` does what a hand-written env.py would (online with an async engine, or offline),
and more: it adds postkit's metadata to the app's, so autogenerate knows postkit's tables;
it ignores postkit's optional search indexes; on PostgreSQL it takes postkit's advisory lock;
and it adopts a database that postkit migrated on its own (`auto_migrate`) before any command.
"""

import os

from notesapp.models import Base

from postkit.migrations import run_env

run_env(Base.metadata, url=os.environ.get("DATABASE_URL"))
