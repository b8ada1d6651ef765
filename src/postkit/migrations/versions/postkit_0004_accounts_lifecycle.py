"""Accounts lifecycle: session details for the session list, and ids SQLite never reuses.

- ``postkit_auth_sessions`` gains ``user_agent`` (the login's User-Agent, cut to 255
  characters) and ``last_used_at`` (set at login and at each refresh).
- On SQLite ``postkit_users`` is rebuilt with ``AUTOINCREMENT``, so the id of a deleted account
  is never handed to a later one. PostgreSQL's sequence never reuses ids: nothing to do there.

Revision ID: postkit_0004
Revises: postkit_0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from postkit.models import UTCDateTime

revision: str = "postkit_0004"
# Developed on top of postkit_0001; re-chained onto postkit_0003 when the branches merge.
down_revision: str | Sequence[str] | None = "postkit_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild_users(*, autoincrement: bool) -> None:
    # SQLite cannot change a table's AUTOINCREMENT in place: batch mode copies the table into a
    # new one (run_alembic turns foreign keys off meanwhile and checks them afterwards).
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "postkit_users", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    with op.batch_alter_table("postkit_auth_sessions") as batch:
        batch.add_column(sa.Column("user_agent", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("last_used_at", UTCDateTime(), nullable=True))
    _rebuild_users(autoincrement=True)


def downgrade() -> None:
    _rebuild_users(autoincrement=False)
    with op.batch_alter_table("postkit_auth_sessions") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("user_agent")
