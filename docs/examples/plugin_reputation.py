"""Weighted votes and computed fields: trusted members' votes count triple, and every post
carries its reading time and whether the reader wrote it. Its hooks are coroutines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from postkit import Post, User, hookimpl

WORDS_PER_MINUTE = 200


class Reputation:
    """``vote_weight`` and ``extra_post_fields``, written as async hooks."""

    def __init__(self, *, trusted: Iterable[str], weight: int = 3) -> None:
        self.trusted = {name.lower() for name in trusted}
        self.weight = weight

    @hookimpl
    async def vote_weight(self, user: User) -> int | None:
        # A real plugin might look the user's karma up here; None defers to the default (1).
        return self.weight if user.username in self.trusted else None

    @hookimpl
    async def extra_post_fields(self, post: Post, user: User | None) -> dict[str, Any]:
        words = len(post.content.split())
        return {
            "reading_minutes": max(1, round(words / WORDS_PER_MINUTE)),
            "mine": user is not None and post.owner_id == user.id,
        }
