"""Vote rules: one vote per user and post, an exact per-post counter, and the vote hooks.

Race safety comes from the database, not from check-then-insert: the vote is an
``INSERT ... ON CONFLICT DO NOTHING RETURNING weight`` against the ``(user_id, post_id)`` primary
key, and the post's ``vote_count`` moves by that weight with an atomic ``UPDATE ... SET vote_count
= vote_count + :weight`` in the same transaction. Removal is ``DELETE ... RETURNING weight``
followed by the matching decrement, so a vote cast with weight 3 takes 3 back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Insert, Table, and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from postkit.errors import AlreadyVoted, PostNotFound, VoteNotFound
from postkit.models import Post, User, Vote
from postkit.plugins import HookRunner
from postkit.services.posts import Posts

__all__ = ["VoteOutcome", "Votes"]

_votes = cast(Table, Vote.__table__)
_posts = cast(Table, Post.__table__)


@dataclass(frozen=True)
class VoteOutcome:
    """What a vote request did: ``changed`` is False when the vote already was as asked."""

    post_id: int
    changed: bool
    votes: int


def _insert_vote(dialect: str, values: dict[str, Any]) -> Insert:
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(_votes)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[_votes.c.user_id, _votes.c.post_id])
        .returning(_votes.c.weight)
    )


async def _move_count(session: AsyncSession, post_id: int, delta: int) -> int:
    statement = (
        update(_posts)
        .where(_posts.c.id == post_id)
        # A vote is not an edit: keep updated_at (the column's onupdate would move it).
        .values(vote_count=_posts.c.vote_count + delta, updated_at=_posts.c.updated_at)
        .returning(_posts.c.vote_count)
    )
    count: int = (await session.execute(statement)).scalar_one()
    return count


class Votes:
    """Vote rules (``kit.votes``): one vote per user and post, an exact counter, the vote hooks.

    :param posts: finds the post a vote is for, with the reader's visibility rules.
    :param hooks: the kit's plugin hooks.
    """

    def __init__(self, *, posts: Posts, hooks: HookRunner) -> None:
        self.posts = posts
        self.hooks = hooks

    async def _weight(self, post: Post, user: User) -> int:
        # postkit's own answer (1) is a trylast default plugin, so some plugin always answers.
        weight = await self.hooks.first("vote_weight", post=post, user=user, direction=1)
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise TypeError(f"vote_weight must answer an int or None, not {type(weight).__name__}")
        return weight

    async def _settle(
        self, session: AsyncSession, post: Post, user: User, *, delta: int | None, direction: int
    ) -> VoteOutcome:
        """Move the post's counter by ``delta`` (``None``: the vote was already as asked),
        commit, and call ``after_vote`` when something changed."""
        if delta is None:
            await session.commit()  # nothing changed; end the transaction now
            return VoteOutcome(post_id=post.id, changed=False, votes=post.vote_count)
        count = await _move_count(session, post.id, delta)
        await session.commit()
        set_committed_value(post, "vote_count", count)
        await self.hooks.notify(
            "after_vote", post=post, user=user, direction=direction, previous=1 - direction
        )
        return VoteOutcome(post_id=post.id, changed=True, votes=count)

    async def cast(
        self, session: AsyncSession, *, post_id: int, user: User, strict: bool
    ) -> VoteOutcome:
        """Record ``user``'s vote on a post they can see, and commit.

        :param strict: raise :class:`~postkit.errors.AlreadyVoted` when the vote exists
            (``POST /vote``); otherwise an existing vote is success with ``changed=False``
            (``PUT /posts/{id}/vote``).
        :raises PostNotFound: no such post, or one ``user`` may not see.
        :raises VoteRejected: a ``validate_vote`` plugin refused it.
        """
        post = await self.posts.find(session, post_id=post_id, user=user)
        await self.hooks.call("validate_vote", post=post, user=user, direction=1)
        weight = await self._weight(post, user)
        dialect = session.get_bind().dialect.name
        values = {"user_id": user.id, "post_id": post.id, "weight": weight}
        try:
            inserted = (await session.execute(_insert_vote(dialect, values))).scalar_one_or_none()
        except IntegrityError:
            # The post was deleted between the lookup and the insert.
            raise PostNotFound() from None
        if inserted is None and strict:
            raise AlreadyVoted()
        return await self._settle(session, post, user, delta=inserted, direction=1)

    async def remove(
        self, session: AsyncSession, *, post_id: int, user: User, strict: bool
    ) -> VoteOutcome:
        """Take back ``user``'s vote on a post they can see, and commit.

        :param strict: raise :class:`~postkit.errors.VoteNotFound` when there is no vote
            (``POST /vote`` with ``dir`` 0); otherwise no vote is success with ``changed=False``
            (``DELETE /posts/{id}/vote``).
        :raises PostNotFound: no such post, or one ``user`` may not see.
        :raises VoteRejected: a ``validate_vote`` plugin refused it.
        """
        post = await self.posts.find(session, post_id=post_id, user=user)
        await self.hooks.call("validate_vote", post=post, user=user, direction=0)
        statement = (
            delete(_votes)
            .where(_votes.c.user_id == user.id, _votes.c.post_id == post.id)
            .returning(_votes.c.weight)
        )
        weight = (await session.execute(statement)).scalar_one_or_none()
        if weight is None and strict:
            raise VoteNotFound()
        delta = None if weight is None else -weight
        return await self._settle(session, post, user, delta=delta, direction=0)

    async def withdraw_all(self, session: AsyncSession, *, user_id: int) -> int:
        """Remove every vote ``user_id`` cast, taking each one's weight off its post's counter.

        Call it (in the same transaction) before deleting a user: the foreign-key cascade
        removes the votes too, but cannot move the counters. Returns the number of votes
        removed. Does not commit.
        """
        cast_on_post = and_(_votes.c.post_id == _posts.c.id, _votes.c.user_id == user_id)
        await session.execute(
            update(_posts)
            .where(_posts.c.id.in_(select(_votes.c.post_id).where(_votes.c.user_id == user_id)))
            .values(
                vote_count=_posts.c.vote_count
                - select(func.coalesce(func.sum(_votes.c.weight), 0))
                .where(cast_on_post)
                .scalar_subquery(),
                updated_at=_posts.c.updated_at,  # the posts were not edited
            )
        )
        removed = await session.execute(delete(_votes).where(_votes.c.user_id == user_id))
        return int(getattr(removed, "rowcount", 0) or 0)
