"""Community rules: banned words, no voting on your own posts or comments, moderators may edit
anything and delete any comment.

Register it with ``PostKit(settings, plugins=[CommunityRules(...)])``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from postkit import Comment, CommentRejected, Post, PostRejected, User, VoteRejected, hookimpl


class CommunityRules:
    """Refuse posts containing banned words and self-votes; let moderators modify any post."""

    def __init__(self, *, banned_words: Iterable[str], moderators: Iterable[str]) -> None:
        self.banned_words = {word.lower() for word in banned_words}
        self.moderators = {name.lower() for name in moderators}

    @hookimpl
    def validate_post(self, data: dict[str, Any]) -> None:
        # On PATCH only the fields sent are in ``data``; check whichever are there.
        text = f"{data.get('title', '')} {data.get('content', '')}".lower()
        found = sorted(word for word in self.banned_words if word in text)
        if found:
            raise PostRejected(f"Please leave out: {', '.join(found)}", code="BANNED_WORDS")

    @hookimpl
    def validate_comment(self, data: dict[str, Any]) -> None:
        found = sorted(word for word in self.banned_words if word in data["body"].lower())
        if found:
            raise CommentRejected(f"Please leave out: {', '.join(found)}", code="BANNED_WORDS")

    @hookimpl
    def validate_vote(self, post: Post, user: User, direction: int) -> None:
        if direction == 1 and post.owner_id == user.id:
            raise VoteRejected(
                "You cannot vote for your own post", status_code=403, code="SELF_VOTE"
            )

    @hookimpl
    def can_modify_post(self, user: User) -> bool | None:
        # True lets a moderator through; None leaves everyone else to the owner-only default.
        return True if user.username in self.moderators else None

    @hookimpl
    def validate_comment_vote(self, comment: Comment, user: User, direction: int) -> None:
        if direction != 0 and comment.author_id == user.id:
            raise VoteRejected(
                "You cannot vote for your own comment", status_code=403, code="SELF_VOTE"
            )

    @hookimpl
    def can_modify_comment(self, user: User, action: str) -> bool | None:
        # Moderators may remove any comment, but not put words in anyone's mouth.
        return True if action == "delete" and user.username in self.moderators else None
