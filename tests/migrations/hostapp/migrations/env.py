"""The host's Alembic environment: one version table for the host's and postkit's branches.

``run_env`` adds postkit's metadata to the host's (so `alembic check` and autogenerate compare
every table the host owns or mounts), ignores postkit's optional search indexes, and adopts a
database that postkit migrated on its own before running any command.
"""

from __future__ import annotations

import os

from host_models import HostBase

from postkit.migrations import run_env

run_env(HostBase.metadata, url=os.environ.get("HOST_DATABASE_URL"))
