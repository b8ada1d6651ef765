"""Community rules: an example postkit plugin implementing a few hooks."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from postkit import Comment, CommentRejected, Post, PostRejected, User, VoteRejected, hookimpl


class CommunityRules:
    """Refuse posts and comments containing banned words, and votes for one's own posts and
    comments.

    :param banned_words: words (matched whole and case-insensitively) a post or comment may not
        contain.
    """

    def __init__(self, banned_words: Iterable[str]) -> None:
        words = sorted({word.strip().lower() for word in banned_words if word.strip()})
        self.banned_words = words
        self._pattern = (
            re.compile(r"\b(" + "|".join(re.escape(word) for word in words) + r")\b", re.I)
            if words
            else None
        )

    @hookimpl
    def validate_post(self, data: dict[str, Any], user: User, existing: Post | None) -> None:
        """Refuse a title or content that contains a banned word (422, code BANNED_WORD)."""
        if self._pattern is None:
            return
        for field in ("title", "content"):
            value = data.get(field)
            if isinstance(value, str) and (match := self._pattern.search(value)):
                raise PostRejected(
                    f"The {field} contains the banned word {match.group(1).lower()!r}.",
                    code="BANNED_WORD",
                )

    @hookimpl
    def validate_vote(self, post: Post, user: User, direction: int) -> None:
        """Refuse a vote for one's own post (403, code SELF_VOTE); removing a vote is allowed."""
        if direction != 0 and post.owner_id == user.id:
            raise VoteRejected(
                "You cannot vote for your own post.", status_code=403, code="SELF_VOTE"
            )

    @hookimpl
    def validate_comment(self, data: dict[str, Any]) -> None:
        """Refuse a comment that contains a banned word (422, code BANNED_WORD)."""
        if self._pattern is not None and (match := self._pattern.search(data["body"])):
            raise CommentRejected(
                f"The comment contains the banned word {match.group(1).lower()!r}.",
                code="BANNED_WORD",
            )

    @hookimpl
    def validate_comment_vote(self, comment: Comment, user: User, direction: int) -> None:
        """Refuse a vote on one's own comment (403, code SELF_VOTE)."""
        if direction != 0 and comment.author_id == user.id:
            raise VoteRejected(
                "You cannot vote on your own comment.", status_code=403, code="SELF_VOTE"
            )
