"""An audit trail: normalises titles before they are saved and records every committed change.

"after" hooks run once the write is committed; if one fails, postkit logs the error and the
client still gets its success answer. Sync and async implementations can be mixed freely.
"""

from __future__ import annotations

from typing import Any

from postkit import Post, User, hookimpl


class AuditTrail:
    """Collects ``(event, details)`` tuples; a real plugin would write to a log or a queue."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def before_post_save(self, post: Post) -> None:
        # Runs inside the transaction, just before the write: collapse runs of spaces.
        post.title = " ".join(post.title.split())

    @hookimpl
    async def after_post_create(self, post: Post, user: User) -> None:
        self.events.append(("created", {"post": post.id, "by": user.username}))

    @hookimpl
    async def after_post_update(self, post: Post, user: User, changes: dict[str, Any]) -> None:
        self.events.append(
            ("updated", {"post": post.id, "by": user.username, "fields": sorted(changes)})
        )

    @hookimpl
    def after_post_delete(self, post: Post, user: User) -> None:
        self.events.append(("deleted", {"post": post.id, "by": user.username}))

    @hookimpl
    def after_vote(self, post: Post, user: User, direction: int, previous: int) -> None:
        self.events.append(
            (
                "voted",
                {
                    "post": post.id,
                    "by": user.username,
                    "dir": direction,
                    "previous": previous,
                    "votes": post.vote_count,
                },
            )
        )
