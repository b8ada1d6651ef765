"""postkit_0005 (comments) on a database that already holds posts, both ways, on SQLite and
PostgreSQL: posts keep their rows and get comment_count 0, the comment tables work with their
cascades, and the downgrade removes them and the column."""

from __future__ import annotations

from postkit.migrations import downgrade, upgrade
from tests.migrations.test_migration_accounts_lifecycle import USER
from tests.support.databases import run_sql, table_names

COMMENT_TABLES = {"postkit_comments", "postkit_comment_votes", "postkit_comment_revisions"}


def test_upgrade_adds_comments_to_a_populated_database(empty_database_url):
    url = empty_database_url
    upgrade(url, "postkit_0004")
    run_sql(
        url,
        USER.format(id=1),
        USER.format(id=2),
        "INSERT INTO postkit_posts (title, content, owner_id, vote_count) VALUES ('t', 'c', 1, 4)",
    )
    upgrade(url, "postkit_0005")
    assert table_names(url) >= COMMENT_TABLES
    assert [
        tuple(r) for r in run_sql(url, "SELECT title, vote_count, comment_count FROM postkit_posts")
    ] == [("t", 4, 0)]
    run_sql(
        url,
        "INSERT INTO postkit_comments (id, post_id, author_id, body) VALUES (1, 1, 2, 'top')",
        "INSERT INTO postkit_comments (id, post_id, parent_id, author_id, body, depth) "
        "VALUES (2, 1, 1, 1, 'reply', 2)",
        "INSERT INTO postkit_comment_votes (user_id, comment_id, weight) VALUES (1, 2, -1)",
        "INSERT INTO postkit_comment_revisions (comment_id, body, editor_id) VALUES (2, 'old', 1)",
    )
    [[score, reply_count, best]] = run_sql(
        url, "SELECT score, reply_count, best_rank FROM postkit_comments WHERE id = 1"
    )
    assert (score, reply_count, best) == (0, 0, 0)
    # An account removed in SQL leaves its comments authorless; a post takes its comments.
    run_sql(url, "DELETE FROM postkit_users WHERE id = 2")
    assert run_sql(url, "SELECT body, author_id FROM postkit_comments WHERE id = 1") == [
        ("top", None)
    ]
    run_sql(url, "DELETE FROM postkit_posts WHERE id = 1")
    for table in COMMENT_TABLES:
        assert run_sql(url, f"SELECT count(*) FROM {table}") == [(0,)], table

    downgrade(url, "postkit_0004")
    tables = table_names(url)
    assert not COMMENT_TABLES & tables
    assert [tuple(r) for r in run_sql(url, "SELECT count(*) FROM postkit_users")] == [(1,)]
    upgrade(url)
