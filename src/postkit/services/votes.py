"""Vote rules: one vote per user and post, up or down, exact per-post counters, and the vote
hooks.

Lock order: the post's row first (its lookup is ``FOR NO KEY UPDATE``, the lock the counter
update takes), then the vote's; a delete of the post takes the post's row before the votes its
cascade removes, so the two wait for each other in turn and never deadlock.

Race safety comes from the database, not from check-then-insert: a vote is an ``INSERT ... ON
CONFLICT DO NOTHING RETURNING weight`` against the ``(user_id, post_id)`` primary key. When a
vote already exists, it is read back ``FOR UPDATE`` (SQLite holds its one write lock from the
INSERT on), so the direction and weight replaced by a switch are the ones stored, never a stale
copy; a vote removed between the two statements sends the loop back to the INSERT. Removal is
``DELETE ... RETURNING weight, direction``.

Whatever changed, the post's counters then move by that exact difference with one atomic
``UPDATE ... SET vote_count = vote_count + :delta, upvotes = upvotes + ..., ...`` in the same
transaction (``vote_count`` is the score: the sum of the votes' signed weights), which also
locks the post's row until the commit; the ranks (:mod:`postkit.ranking`, or a ``rank_score``
plugin) are computed from the counters it returns and written before that commit, so no other
vote can interleave between the counters and the ranks computed from them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Insert, Table, and_, bindparam, case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from postkit.driver import SessionTransaction, Transaction
from postkit.errors import AlreadyVoted, DownvotesDisabled, PostNotFound, VoteNotFound
from postkit.models import Post, User, Vote, utcnow
from postkit.plugins import HookRunner
from postkit.services.posts import Posts
from postkit.services.sessions import WriteAccess

__all__ = ["VoteOutcome", "Votes"]

_votes = cast(Table, Vote.__table__)
_posts = cast(Table, Post.__table__)

# How often a vote goes back to its INSERT when the vote it conflicted with was removed before
# it could be read (each round needs a concurrent removal to commit in between).
_MAX_ROUNDS = 20


@dataclass(frozen=True)
class Counts:
    """A post's vote counters: its score (the sum of the signed weights), up- and down-votes."""

    score: int
    upvotes: int
    downvotes: int


@dataclass(frozen=True)
class VoteOutcome:
    """What a vote request did: ``changed`` is False when the vote already was as asked.

    ``direction`` is the caller's vote on the post afterwards (1, -1, or 0 for none).
    """

    post_id: int
    changed: bool
    direction: int
    score: int
    upvotes: int
    downvotes: int

    @property
    def votes(self) -> int:
        """The score, under its name before down-votes (deprecated)."""
        return self.score


@functools.cache
def _insert_vote(dialect: str) -> Insert:
    """The vote's ``INSERT ... ON CONFLICT DO NOTHING RETURNING weight`` for ``dialect``, built
    once, with bound ``v_user_id``, ``v_post_id``, ``v_weight``, ``v_direction`` and
    ``v_created_at``."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(_votes)
        .values(
            user_id=bindparam("v_user_id"),
            post_id=bindparam("v_post_id"),
            weight=bindparam("v_weight"),
            direction=bindparam("v_direction"),
            created_at=bindparam("v_created_at", type_=_votes.c.created_at.type),
        )
        .on_conflict_do_nothing(index_elements=[_votes.c.user_id, _votes.c.post_id])
        .returning(_votes.c.weight)
    )


# The other statements of a vote, built once with bound values (``v_user_id``, ``v_post_id``,
# ...; not the columns' own names, which SQLAlchemy keeps for an UPDATE's or INSERT's values):
# the fast path then finds each one's compiled SQL by identity, with no cache key to compute.
_vote_key = and_(
    _votes.c.user_id == bindparam("v_user_id"), _votes.c.post_id == bindparam("v_post_id")
)
_lock_vote = select(_votes.c.weight, _votes.c.direction).where(_vote_key).with_for_update()
_switch_vote = (
    update(_votes)
    .where(_vote_key)
    .values(weight=bindparam("v_weight"), direction=bindparam("v_direction"))
)
_delete_vote = delete(_votes).where(_vote_key).returning(_votes.c.weight, _votes.c.direction)
_move_counts_update = (
    update(_posts)
    .where(_posts.c.id == bindparam("v_post_id"))
    .values(
        vote_count=_posts.c.vote_count + bindparam("v_score", type_=_posts.c.vote_count.type),
        upvotes=_posts.c.upvotes + bindparam("v_upvotes", type_=_posts.c.upvotes.type),
        downvotes=_posts.c.downvotes + bindparam("v_downvotes", type_=_posts.c.downvotes.type),
        # A vote is not an edit: keep updated_at (the column's onupdate would move it).
        updated_at=_posts.c.updated_at,
    )
    .returning(_posts.c.vote_count, _posts.c.upvotes, _posts.c.downvotes, _posts.c.created_at)
)


def _counter_deltas(direction: int, sign: int) -> tuple[int, int]:
    """How a vote of ``direction`` moves (upvotes, downvotes): ``sign`` 1 adds it, -1 takes it
    away."""
    return (sign, 0) if direction == 1 else (0, sign)


async def _move_counts(
    transaction: Transaction, post_id: int, *, score: int, upvotes: int, downvotes: int
) -> tuple[Counts, Any]:
    rows = await transaction.execute(
        _move_counts_update,
        {"v_post_id": post_id, "v_score": score, "v_upvotes": upvotes, "v_downvotes": downvotes},
    )
    row = rows[0] if rows else None
    if row is None:
        # The post was deleted after the lookup (its votes went with it): nothing to count.
        raise PostNotFound()
    return Counts(row.vote_count, row.upvotes, row.downvotes), row.created_at


_rank_update = (
    update(_posts)
    .where(_posts.c.id == bindparam("b_id"))
    .values(
        hot_rank=bindparam("b_hot_rank"),
        best_rank=bindparam("b_best_rank"),
        controversial_rank=bindparam("b_controversial_rank"),
        updated_at=_posts.c.updated_at,
    )
)


def _rank_params(post_id: int, ranks: dict[str, float]) -> dict[str, Any]:
    return {"b_id": post_id, **{f"b_{column}": value for column, value in ranks.items()}}


class Votes:
    """Vote rules (``kit.votes``): one vote per user and post, exact counters, the vote hooks.

    :param posts: finds the post a vote is for, with the reader's visibility rules, and
        computes its ranks.
    :param hooks: the kit's plugin hooks.
    :param allow_downvotes: the ``allow_downvotes`` setting: ``False`` refuses down-votes.
    """

    def __init__(self, *, posts: Posts, hooks: HookRunner, allow_downvotes: bool = True) -> None:
        self.posts = posts
        self.hooks = hooks
        self.allow_downvotes = allow_downvotes

    async def _weight(self, post: Post, user: User, direction: int) -> int:
        # postkit's own answer (1) is a trylast default plugin, so some plugin always answers.
        weight = await self.hooks.first("vote_weight", post=post, user=user, direction=direction)
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise TypeError(f"vote_weight must answer an int or None, not {type(weight).__name__}")
        return weight

    async def _settle(
        self,
        transaction: Transaction,
        post: Post,
        user: User,
        *,
        moved: tuple[int, int, int] | None,
        direction: int,
        previous: int,
    ) -> tuple[VoteOutcome, dict[str, Any] | None]:
        """Move the post's counters by ``moved`` (score, upvotes, downvotes; ``None``: the vote
        was already as asked), store its new ranks and commit. Answers the outcome and, when
        something changed, the ``after_vote`` arguments (called once the connection is back)."""
        if moved is None:
            await transaction.commit()  # nothing changed; end the transaction now
            unchanged = VoteOutcome(
                post_id=post.id,
                changed=False,
                direction=previous,
                score=post.vote_count,
                upvotes=post.upvotes,
                downvotes=post.downvotes,
            )
            return unchanged, None
        score, upvotes, downvotes = moved
        counts, created_at = await _move_counts(
            transaction, post.id, score=score, upvotes=upvotes, downvotes=downvotes
        )
        set_committed_value(post, "vote_count", counts.score)
        set_committed_value(post, "upvotes", counts.upvotes)
        set_committed_value(post, "downvotes", counts.downvotes)
        ranks = await self.posts.ranks(
            post,
            score=counts.score,
            upvotes=counts.upvotes,
            downvotes=counts.downvotes,
            created_at=created_at,
        )
        await transaction.execute(_rank_update, _rank_params(post.id, ranks))
        await transaction.commit()
        for column, value in ranks.items():
            set_committed_value(post, column, value)
        outcome = VoteOutcome(
            post_id=post.id,
            changed=True,
            direction=direction,
            score=counts.score,
            upvotes=counts.upvotes,
            downvotes=counts.downvotes,
        )
        after = {"post": post, "user": user, "direction": direction, "previous": previous}
        return outcome, after

    async def _notify(self, after: dict[str, Any] | None) -> None:
        if after is not None:
            await self.hooks.notify("after_vote", **after)

    def _check_direction(self, direction: int) -> None:
        if direction not in (1, -1):
            raise ValueError(f"a vote's direction is 1 or -1, not {direction!r}")
        if direction == -1 and not self.allow_downvotes:
            raise DownvotesDisabled()

    async def cast(
        self,
        session: AsyncSession,
        *,
        post_id: int,
        user: User,
        strict: bool,
        direction: int = 1,
    ) -> VoteOutcome:
        """Record ``user``'s vote (``direction`` 1 up, -1 down) on a post they can see, and
        commit. A vote of the other direction is switched to this one.

        :param strict: raise :class:`~postkit.errors.AlreadyVoted` when a vote of this
            direction exists (``POST /vote``); otherwise that is success with ``changed=False``
            (``PUT /posts/{id}/vote``).
        :raises DownvotesDisabled: a down-vote while the ``allow_downvotes`` setting is off.
        :raises PostNotFound: no such post, or one ``user`` may not see.
        :raises VoteRejected: a ``validate_vote`` plugin refused it.
        """
        self._check_direction(direction)
        post = await self.posts.find(session, post_id=post_id, user=user, lock=True)
        outcome, after = await self._cast(
            SessionTransaction(session), post, user, strict=strict, direction=direction
        )
        await self._notify(after)
        return outcome

    async def cast_for(
        self, writer: WriteAccess, *, post_id: int, strict: bool, direction: int = 1
    ) -> VoteOutcome:
        """:meth:`cast` on the fast path (the vote routes): the writer's session is checked,
        the post found and the vote recorded in one transaction on a pooled driver connection.

        :raises InvalidToken: the writer's token is no longer good (nothing is written).
        """
        async with writer.transaction() as transaction:
            user = await writer.user_in(transaction)
            self._check_direction(direction)
            post = await self.posts.find_in(transaction, post_id=post_id, user=user, lock=True)
            outcome, after = await self._cast(
                transaction, post, user, strict=strict, direction=direction
            )
        await self._notify(after)
        return outcome

    async def _cast(
        self, transaction: Transaction, post: Post, user: User, *, strict: bool, direction: int
    ) -> tuple[VoteOutcome, dict[str, Any] | None]:
        await self.hooks.call("validate_vote", post=post, user=user, direction=direction)
        weight = direction * await self._weight(post, user, direction)
        insert = _insert_vote(transaction.dialect_name)
        key = {"v_user_id": user.id, "v_post_id": post.id}
        values = {**key, "v_weight": weight, "v_direction": direction, "v_created_at": utcnow()}
        for _ in range(_MAX_ROUNDS):
            try:
                inserted = await transaction.execute(insert, values)
            except IntegrityError:
                # The post was deleted between the lookup and the insert.
                raise PostNotFound() from None
            if inserted:
                up, down = _counter_deltas(direction, 1)
                return await self._settle(
                    transaction,
                    post,
                    user,
                    moved=(weight, up, down),
                    direction=direction,
                    previous=0,
                )
            found = await transaction.execute(_lock_vote, key)
            existing = found[0] if found else None
            if existing is None:
                continue  # removed since the INSERT saw it: insert again
            if existing.direction == direction:
                if strict:
                    raise AlreadyVoted()
                return await self._settle(
                    transaction, post, user, moved=None, direction=direction, previous=direction
                )
            await transaction.execute(
                _switch_vote, {**key, "v_weight": weight, "v_direction": direction}
            )
            up, down = _counter_deltas(direction, 1)
            old_up, old_down = _counter_deltas(existing.direction, -1)
            return await self._settle(
                transaction,
                post,
                user,
                moved=(weight - existing.weight, up + old_up, down + old_down),
                direction=direction,
                previous=existing.direction,
            )
        raise RuntimeError(f"the vote on post {post.id} kept being removed while it was cast")

    async def remove(
        self, session: AsyncSession, *, post_id: int, user: User, strict: bool
    ) -> VoteOutcome:
        """Take back ``user``'s vote (up or down) on a post they can see, and commit.

        :param strict: raise :class:`~postkit.errors.VoteNotFound` when there is no vote
            (``POST /vote`` with ``dir`` 0); otherwise no vote is success with ``changed=False``
            (``DELETE /posts/{id}/vote``).
        :raises PostNotFound: no such post, or one ``user`` may not see.
        :raises VoteRejected: a ``validate_vote`` plugin refused it.
        """
        post = await self.posts.find(session, post_id=post_id, user=user, lock=True)
        outcome, after = await self._remove(SessionTransaction(session), post, user, strict)
        await self._notify(after)
        return outcome

    async def remove_for(self, writer: WriteAccess, *, post_id: int, strict: bool) -> VoteOutcome:
        """:meth:`remove` on the fast path (the vote routes), in one driver transaction.

        :raises InvalidToken: the writer's token is no longer good (nothing is written).
        """
        async with writer.transaction() as transaction:
            user = await writer.user_in(transaction)
            post = await self.posts.find_in(transaction, post_id=post_id, user=user, lock=True)
            outcome, after = await self._remove(transaction, post, user, strict)
        await self._notify(after)
        return outcome

    async def _remove(
        self, transaction: Transaction, post: Post, user: User, strict: bool
    ) -> tuple[VoteOutcome, dict[str, Any] | None]:
        await self.hooks.call("validate_vote", post=post, user=user, direction=0)
        found = await transaction.execute(
            _delete_vote, {"v_user_id": user.id, "v_post_id": post.id}
        )
        removed = found[0] if found else None
        if removed is None:
            if strict:
                raise VoteNotFound()
            return await self._settle(transaction, post, user, moved=None, direction=0, previous=0)
        up, down = _counter_deltas(removed.direction, -1)
        return await self._settle(
            transaction,
            post,
            user,
            moved=(-removed.weight, up, down),
            direction=0,
            previous=removed.direction,
        )

    async def withdraw_all(self, session: AsyncSession, *, user_id: int) -> int:
        """Remove every vote ``user_id`` cast, taking each one off its post's counters and
        recomputing that post's ranks.

        Call it (in the same transaction) before deleting a user: the foreign-key cascade
        removes the votes too, but cannot move the counters. Returns the number of votes
        removed. Does not commit.
        """
        cast_on_post = and_(_votes.c.post_id == _posts.c.id, _votes.c.user_id == user_id)

        def total(expression: Any) -> Any:
            return (
                select(func.coalesce(func.sum(expression), 0)).where(cast_on_post).scalar_subquery()
            )

        moved = await session.execute(
            update(_posts)
            .where(_posts.c.id.in_(select(_votes.c.post_id).where(_votes.c.user_id == user_id)))
            .values(
                vote_count=_posts.c.vote_count - total(_votes.c.weight),
                upvotes=_posts.c.upvotes - total(case((_votes.c.direction == 1, 1), else_=0)),
                downvotes=_posts.c.downvotes - total(case((_votes.c.direction == -1, 1), else_=0)),
                updated_at=_posts.c.updated_at,  # the posts were not edited
            )
            .returning(
                _posts.c.id,
                _posts.c.vote_count,
                _posts.c.upvotes,
                _posts.c.downvotes,
                _posts.c.created_at,
            )
        )
        rank_rows = []
        for row in moved.all():
            item = Post(
                id=row.id,
                vote_count=row.vote_count,
                upvotes=row.upvotes,
                downvotes=row.downvotes,
                created_at=row.created_at,
            )
            ranks = await self.posts.ranks(
                item,
                score=row.vote_count,
                upvotes=row.upvotes,
                downvotes=row.downvotes,
                created_at=row.created_at,
            )
            rank_rows.append(_rank_params(row.id, ranks))
        if rank_rows:
            await session.execute(_rank_update, rank_rows)
        removed = await session.execute(delete(_votes).where(_votes.c.user_id == user_id))
        return int(getattr(removed, "rowcount", 0) or 0)
