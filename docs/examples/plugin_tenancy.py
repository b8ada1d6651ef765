"""Tenancy: readers see only posts written by people of their own email domain.

``post_query_filters`` answers SQL expressions; postkit adds them to every query that reads
posts (the feed, one post, and the lookup before an update, a delete or a vote). Those queries
join each post's owner, so the filters may use :class:`~postkit.User` columns too.
"""

from __future__ import annotations

from sqlalchemy import false
from sqlalchemy.sql.elements import ColumnElement

from postkit import User, hookimpl


class SameDomainOnly:
    """Show each reader only the posts of authors who share their email domain."""

    @hookimpl
    def post_query_filters(self, user: User | None) -> list[ColumnElement[bool]]:
        if user is None:
            return [false()]  # anonymous readers (public_reads) see nothing
        domain = user.email.rsplit("@", 1)[1]
        # autoescape: the domain is matched literally, never as a LIKE pattern.
        return [User.email.endswith(f"@{domain}", autoescape=True)]
