"""postkit_0004 (accounts lifecycle) on a database that already holds data, both ways, on SQLite
and PostgreSQL: the rows survive, SQLite stops reusing ids, the downgrade removes the columns."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect

from postkit.db import create_engine_for, normalize_database_url
from postkit.migrations import downgrade, upgrade
from tests.support.databases import run_sql

USER = (
    "INSERT INTO postkit_users (id, email, username, password_hash) "
    "VALUES ({id}, 'u{id}@example.com', 'u{id}', 'x')"
)


def session_columns(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine_for(normalize_database_url(url))
        try:
            async with engine.connect() as connection:
                columns = await connection.run_sync(
                    lambda c: inspect(c).get_columns("postkit_auth_sessions")
                )
                return {column["name"] for column in columns}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_upgrade_keeps_rows_and_stops_id_reuse(empty_database_url, backend):
    url = empty_database_url
    upgrade(url, "postkit_0001")
    run_sql(
        url,
        USER.format(id=1),
        USER.format(id=2),
        "INSERT INTO postkit_posts (title, content, owner_id) VALUES ('t', 'c', 2)",
        "INSERT INTO postkit_auth_sessions (id, user_id) VALUES ('s1', 2)",
    )
    upgrade(url)
    assert {"user_agent", "last_used_at"} <= session_columns(url)
    rows = run_sql(
        url,
        "SELECT p.title, u.username, s.user_agent, s.last_used_at FROM postkit_posts p "
        "JOIN postkit_users u ON u.id = p.owner_id "
        "JOIN postkit_auth_sessions s ON s.user_id = u.id",
    )
    assert [tuple(row) for row in rows] == [("t", "u2", None, None)]

    # The newest account goes; the next one gets a new id, not the freed one.
    run_sql(url, "DELETE FROM postkit_users WHERE id = 2")
    if backend == "postgresql":
        run_sql(url, "SELECT setval('postkit_users_id_seq', 2)")  # ids 1-2 were given by hand
    run_sql(
        url,
        "INSERT INTO postkit_users (email, username, password_hash) VALUES ('n@e.com', 'n', 'x')",
    )
    [[new_id]] = run_sql(url, "SELECT id FROM postkit_users WHERE username = 'n'")
    assert new_id == 3

    downgrade(url, "postkit_0001")
    assert not {"user_agent", "last_used_at"} & session_columns(url)
    assert [tuple(row) for row in run_sql(url, "SELECT id FROM postkit_users ORDER BY id")] == [
        (1,),
        (3,),
    ]
    upgrade(url)
