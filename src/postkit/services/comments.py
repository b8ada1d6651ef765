"""Comment rules: threads under posts, their visibility, exact counters, votes and edit history.

**Visibility follows the post.** Every comment route first applies the post's rules (drafts
only for their owner, every ``post_query_filters`` answer) and then every
``comment_query_filters`` answer: a comment of a post the reader cannot see answers 404 like
one that does not exist.

**Reads** select plain columns in statements built once per shape and build response dicts
directly (no ORM objects). A comment page costs one query for the post's visibility, one for
the page, and one per nested reply level (``depth``), whatever the number of comments: each
level fetches at most ``replies`` replies of every comment of the level above, ranked by the
page's sort, in one statement. The read routes run them on the fast path
(:class:`~postkit.services.sessions.ReadAccess`): the reader's session is checked in the first
statement (the post's visibility, or the comment itself), unless a plugin's filters need the
reader before it; rows are read by position (driver rows have no attribute names).

**Counters are exact under concurrency.** ``comment_count`` (the post's comments that are not
deleted) and ``reply_count`` (a comment's direct replies that are stored) move with atomic
``UPDATE ... SET x = x + 1`` in the writing transaction. Every write that moves them locks the
post's row first (its ``comment_count`` update), then comments deepest first, so two writers
on one thread never deadlock and a reply racing its parent's deletion is serialised with it:

- the reply's parent update requires ``deleted_at IS NULL``, so a reply that comes second to
  its parent's deletion is refused (409 ``PARENT_DELETED``) and leaves no trace;
- a deletion that comes second sees the new reply in ``reply_count`` and keeps the comment as
  a placeholder (``deleted: true``, body and author cleared) so the reply stays in the thread.

A comment deleted without replies is removed; a placeholder left with no replies is removed
too, up the thread. Votes follow the post votes' pattern (``INSERT ... ON CONFLICT DO
NOTHING``, then the row locked and changed), with ``score``, ``upvotes``, ``downvotes`` and the
ranking scores updated in the vote's transaction. An edit copies the previous body into the
revisions under the comment's lock, in the edit's transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

from sqlalchemy import (
    Insert,
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.elements import ColumnElement

from postkit.errors import (
    CommentNotFound,
    CommentTooDeep,
    DownvotesDisabled,
    InvalidCursor,
    InvalidParent,
    NotCommentAuthor,
    ParentDeleted,
    PostNotFound,
)
from postkit.models import (
    MAX_ID,
    Comment,
    CommentRevision,
    CommentVote,
    Post,
    User,
    UTCDateTime,
    utcnow,
)
from postkit.plugins import HookRunner
from postkit.ranking import rank_scores
from postkit.services.posts import (
    Posts,
    _Reader,
    _SessionReader,
    cursor_timestamp,
    encode_cursor,
    read_cursor,
)
from postkit.services.sessions import ReadAccess

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "TREE_MAX_REPLIES",
    "CommentPage",
    "CommentSort",
    "CommentVoteOutcome",
    "Comments",
    "RevisionPage",
    "comment_page_statement",
    "replies_statement",
]

CommentSort = Literal["new", "top", "best"]
RevisionsVisibleTo = Literal["readers", "author"]
AnySelect: TypeAlias = "Select[Unpack[tuple[Any, ...]]]"

TREE_MAX_REPLIES = 500
"""The most replies one comment page nests in all (past it, deeper replies are left for
``parent_id`` pages; each comment's ``reply_count`` says what there is)."""

_comments = cast(Table, Comment.__table__)
_posts = cast(Table, Post.__table__)
_votes = cast(Table, CommentVote.__table__)
_revisions = cast(Table, CommentRevision.__table__)
_author = aliased(User, name="author")

_COLUMNS = (
    Comment.id,
    Comment.post_id,
    Comment.parent_id,
    Comment.depth,
    Comment.body,
    Comment.author_id,
    _author.username,
    Comment.created_at,
    Comment.updated_at,
    Comment.edited_at,
    Comment.deleted_at,
    Comment.score,
    Comment.upvotes,
    Comment.downvotes,
    Comment.reply_count,
    Comment.best_rank,
)

_SORT_KEYS: dict[str, Any] = {
    "new": Comment.created_at,
    "top": Comment.score,
    "best": Comment.best_rank,
}

_COLUMN_KEYS = [column.key for column in _COLUMNS]
"""The page's column names, by position (driver rows have no attribute names)."""

_SORT_INDEX = {sort: _COLUMN_KEYS.index(column.key) for sort, column in _SORT_KEYS.items()}
"""Where each sort's key is in a page's row."""


# --- Cursors ------------------------------------------------------------------------------------


def _encode_cursor(scope: str, key: datetime | float, comment_id: int) -> str:
    return encode_cursor(f"comments.{scope}", key, comment_id)


def _decode_cursor(cursor: str, scope: str) -> tuple[Any, int]:
    """The sort key and id a comment cursor names.

    :raises InvalidCursor: a cursor postkit did not issue, or issued for another sort (or for
        the post feed).
    """
    payload = read_cursor(cursor)
    expected = f"comments.{scope}"
    if payload["s"] != expected:
        raise InvalidCursor(f"it belongs to {payload['s']!r}, not to {expected!r}")
    comment_id, key = payload["i"], payload["k"]
    if type(comment_id) is not int or not 0 <= comment_id <= MAX_ID:
        raise InvalidCursor("bad id")
    if scope in ("top", "revisions"):
        if type(key) is not int or not -(2**31) <= key <= MAX_ID:
            raise InvalidCursor("bad key")
        return key, comment_id
    if scope == "best":
        if type(key) not in (int, float) or not 0.0 <= key <= 1.0:
            raise InvalidCursor("bad key")
        return float(key), comment_id
    return cursor_timestamp(key), comment_id


# --- Statements ---------------------------------------------------------------------------------


def _post_visible() -> ColumnElement[bool]:
    """The draft rule, for a bound ``reader_id`` (as on every post read)."""
    return (Post.published == true()) | (Post.owner_id == bindparam("reader_id"))


@functools.cache
def _post_check_statement() -> AnySelect:
    """The post's id if the reader may see it, for bound ``post_id`` and ``reader_id`` (the
    owner is joined: post filters may use the author's columns)."""
    statement: AnySelect = (
        select(Post.id)
        .join(User, User.id == Post.owner_id)
        .where(Post.id == bindparam("post_id"), _post_visible())
    )
    return statement


@functools.cache
def _comment_by_id() -> AnySelect:
    """``GET /comments/{id}``: the comment's columns if the reader may see its post, for bound
    ``comment_id`` and ``reader_id``."""
    statement: AnySelect = (
        select(*_COLUMNS)
        .join(Post, Post.id == Comment.post_id)
        .join(User, User.id == Post.owner_id)
        .outerjoin(_author, _author.id == Comment.author_id)
        .where(Comment.id == bindparam("comment_id"), _post_visible())
    )
    return statement


@functools.cache
def _page_template(sort: CommentSort, top_level: bool, after: bool) -> AnySelect:
    """One comment page for one shape, with bound parameters: ``post_id``, ``limit``, and as
    the shape needs ``parent_id`` and ``after_key``/``after_id``. Served by the thread index of
    ``sort`` (``parent_id IS NULL`` is an index condition too)."""
    key = _SORT_KEYS[sort]
    statement: AnySelect = (
        select(*_COLUMNS)
        .outerjoin(_author, _author.id == Comment.author_id)
        .where(Comment.post_id == bindparam("post_id"))
    )
    if top_level:
        statement = statement.where(Comment.parent_id.is_(None))
    else:
        statement = statement.where(Comment.parent_id == bindparam("parent_id"))
    if after:
        statement = statement.where(
            tuple_(key, Comment.id)
            < tuple_(
                bindparam("after_key", type_=key.type), bindparam("after_id", type_=Comment.id.type)
            )
        )
    return statement.order_by(key.desc(), Comment.id.desc()).limit(bindparam("limit"))


def _replies_query(sort: CommentSort, filters: Sequence[ColumnElement[bool]]) -> AnySelect:
    key = _SORT_KEYS[sort]
    rank = func.row_number().over(
        partition_by=Comment.parent_id, order_by=(key.desc(), Comment.id.desc())
    )
    inner = (
        select(*_COLUMNS, rank.label("rank"))
        .outerjoin(_author, _author.id == Comment.author_id)
        .where(
            Comment.post_id == bindparam("post_id", type_=Comment.post_id.type),
            Comment.parent_id.in_(bindparam("parent_ids", expanding=True, type_=Comment.id.type)),
            *filters,
        )
        .subquery("replies")
    )
    columns = [column for column in inner.c if column.key != "rank"]
    statement: AnySelect = (
        select(*columns)
        .where(inner.c.rank <= bindparam("replies", type_=Comment.id.type))
        .order_by(inner.c.parent_id, inner.c.rank)
    )
    return statement


@functools.cache
def _replies_template(sort: CommentSort) -> AnySelect:
    """One level of nested replies: at most ``replies`` direct replies of each of the bound
    ``parent_ids``, in ``sort`` order, for bound ``post_id``."""
    return _replies_query(sort, ())


@functools.cache
def _revisions_template(after: bool) -> AnySelect:
    statement: AnySelect = select(
        CommentRevision.id, CommentRevision.comment_id, CommentRevision.body,
        CommentRevision.created_at,
    ).where(CommentRevision.comment_id == bindparam("comment_id"))  # fmt: skip
    if after:
        statement = statement.where(CommentRevision.id < bindparam("after_id"))
    return statement.order_by(CommentRevision.id.desc()).limit(bindparam("limit"))


def _page_query(
    *,
    post_id: int,
    parent_id: int | None,
    sort: CommentSort,
    limit: int,
    after: tuple[Any, int] | None,
    filters: Sequence[ColumnElement[bool]],
) -> tuple[AnySelect, dict[str, Any]]:
    statement = _page_template(sort, parent_id is None, after is not None)
    if filters:
        statement = statement.where(*filters)
    params: dict[str, Any] = {"post_id": post_id, "limit": limit}
    if parent_id is not None:
        params["parent_id"] = parent_id
    if after is not None:
        params["after_key"], params["after_id"] = after
    return statement, params


def comment_page_statement(
    *,
    post_id: int,
    limit: int,
    sort: CommentSort = "best",
    parent_id: int | None = None,
    after: tuple[Any, int] | None = None,
    filters: Sequence[ColumnElement[bool]] = (),
) -> AnySelect:
    """The statement of one comment page, with its parameters bound (for EXPLAIN and tests)."""
    statement, params = _page_query(
        post_id=post_id, parent_id=parent_id, sort=sort, limit=limit, after=after, filters=filters
    )
    return statement.params(params)


def replies_statement(
    *, post_id: int, parent_ids: Sequence[int], replies: int, sort: CommentSort = "best"
) -> AnySelect:
    """The statement of one level of nested replies, parameters bound (for EXPLAIN)."""
    return _replies_template(sort).params(
        post_id=post_id, parent_ids=list(parent_ids), replies=replies
    )


# --- Serialisation ------------------------------------------------------------------------------


def _row_dict(row: Any) -> dict[str, Any]:
    (
        comment_id, post_id, parent_id, depth, body, author_id, username, created_at,
        updated_at, edited_at, deleted_at, score, upvotes, downvotes, reply_count, _best,
    ) = row  # fmt: skip
    return {
        "id": comment_id,
        "post_id": post_id,
        "parent_id": parent_id,
        "depth": depth,
        "body": body,
        "author": None if author_id is None else {"id": author_id, "username": username},
        "created_at": created_at,
        "updated_at": updated_at,
        "edited_at": edited_at,
        "deleted": deleted_at is not None,
        "score": score,
        "upvotes": upvotes,
        "downvotes": downvotes,
        "reply_count": reply_count,
        "replies": [],
    }


def serialize_comment(comment: Comment, *, username: str | None) -> dict[str, Any]:
    """The response dict of an ORM comment (after a write): the pages' shape."""
    return _row_dict(
        (
            comment.id, comment.post_id, comment.parent_id, comment.depth, comment.body,
            comment.author_id, username, comment.created_at, comment.updated_at,
            comment.edited_at, comment.deleted_at, comment.score or 0, comment.upvotes or 0,
            comment.downvotes or 0, comment.reply_count or 0, comment.best_rank,
        )
    )  # fmt: skip


def _sign(weight: int) -> int:
    return (weight > 0) - (weight < 0)


# --- Results ------------------------------------------------------------------------------------


@dataclass
class CommentPage:
    """One page of comments (with nested replies in tree pages) and the next page's cursor."""

    comments: list[dict[str, Any]]
    next_cursor: str | None


@dataclass
class RevisionPage:
    """One page of a comment's previous versions, newest first."""

    revisions: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class CommentVoteOutcome:
    """What a comment vote request did: ``changed`` is False when the vote already was as
    asked; ``direction`` is the voter's standing vote afterwards."""

    comment_id: int
    changed: bool
    direction: int
    score: int
    upvotes: int
    downvotes: int


def _insert_vote(dialect: str, values: dict[str, Any]) -> Insert:
    insert_ = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert_(_votes)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[_votes.c.user_id, _votes.c.comment_id])
        .returning(_votes.c.weight)
    )


class Comments:
    """Comment rules (``kit.comments``): threads, visibility, ownership, exact counters, votes,
    edit history and the comment hooks.

    :param posts: finds the post a comment is on, with the reader's visibility rules.
    :param hooks: the kit's plugin hooks.
    :param max_depth: the ``comment_max_depth`` setting.
    :param allow_downvotes: the ``allow_downvotes`` setting.
    :param revisions_visible_to: the ``revisions_visible_to`` setting.
    """

    def __init__(
        self,
        *,
        posts: Posts,
        hooks: HookRunner,
        max_depth: int = 8,
        allow_downvotes: bool = True,
        revisions_visible_to: RevisionsVisibleTo = "readers",
    ) -> None:
        self.posts = posts
        self.hooks = hooks
        self.max_depth = max_depth
        self.allow_downvotes = allow_downvotes
        self.revisions_visible_to: RevisionsVisibleTo = revisions_visible_to

    # --- Visibility -----------------------------------------------------------------------------

    async def _post_filters(self, user: User | None) -> list[ColumnElement[bool]]:
        answers = await self.hooks.call("post_query_filters", user=user)
        return [condition for answer in answers for condition in answer]

    async def _comment_filters(self, user: User | None) -> list[ColumnElement[bool]]:
        answers = await self.hooks.call("comment_query_filters", user=user)
        return [condition for answer in answers for condition in answer]

    async def _reader_filters(self, hook: str, reader: _Reader) -> list[ColumnElement[bool]]:
        # Filters need the reader before the query; without any, the check rides on the read.
        if not self.hooks.has_implementations(hook):
            return []
        answers = await self.hooks.call(hook, user=await reader.user())
        return [condition for answer in answers for condition in answer]

    async def _check_post(self, reader: _Reader, post_id: int) -> None:
        if not 1 <= post_id <= MAX_ID:
            await reader.user()  # a bad token is still a 401, whatever the id
            raise PostNotFound()
        statement = _post_check_statement()
        filters = await self._reader_filters("post_query_filters", reader)
        if filters:
            statement = statement.where(*filters)
        params = {"post_id": post_id, "reader_id": reader.reader_id}
        if not await reader.fetch(statement, params):
            raise PostNotFound()

    async def _visible_row(self, reader: _Reader, comment_id: int) -> dict[str, Any]:
        if not 1 <= comment_id <= MAX_ID:
            await reader.user()  # a bad token is still a 401, whatever the id
            raise CommentNotFound()
        statement = _comment_by_id()
        filters = [
            *await self._reader_filters("post_query_filters", reader),
            *await self._reader_filters("comment_query_filters", reader),
        ]
        if filters:
            statement = statement.where(*filters)
        params = {"comment_id": comment_id, "reader_id": reader.reader_id}
        rows = await reader.fetch(statement, params)
        if not rows:
            raise CommentNotFound()
        return _row_dict(rows[0])

    async def find(self, session: AsyncSession, *, comment_id: int, user: User | None) -> Comment:
        """The ORM comment ``user`` may see, for a write, a vote or a host route that acts on
        comments (reports, say). Deleted comments (placeholders in a thread) are not found.

        :raises CommentNotFound: no such comment, a deleted one, or one ``user`` may not see
            (its post hidden from them, or a ``comment_query_filters`` answer).
        """
        if not 1 <= comment_id <= MAX_ID:
            raise CommentNotFound()
        statement: Select[Comment] = (
            select(Comment)
            .join(Post, Post.id == Comment.post_id)
            .join(User, User.id == Post.owner_id)
            .where(
                Comment.id == bindparam("comment_id"),
                Comment.deleted_at.is_(None),
                _post_visible(),
            )
        )
        filters = [*await self._post_filters(user), *await self._comment_filters(user)]
        if filters:
            statement = statement.where(*filters)
        params = {"comment_id": comment_id, "reader_id": user.id if user is not None else None}
        comment = (await session.execute(statement, params)).scalar_one_or_none()
        if comment is None:
            raise CommentNotFound()
        return comment

    # --- Reads ----------------------------------------------------------------------------------

    async def page(
        self,
        session: AsyncSession,
        *,
        post_id: int,
        user: User | None,
        sort: CommentSort = "best",
        limit: int = 10,
        cursor: str | None = None,
        parent_id: int | None = None,
        depth: int = 2,
        replies: int = 3,
    ) -> CommentPage:
        """A page of a post's comments that ``user`` may see.

        Without ``parent_id``: top-level comments, each with up to ``replies`` of its replies
        nested (and theirs, ``depth`` levels down). With ``parent_id``: a flat page of that
        comment's direct replies.

        :raises PostNotFound: no such post, or one ``user`` may not see.
        :raises CommentNotFound: ``parent_id`` names no visible comment of the post.
        :raises InvalidCursor: ``cursor`` is not one postkit issued for this sort.
        """
        return await self._page(
            _SessionReader(session, user),
            post_id=post_id,
            sort=sort,
            limit=limit,
            cursor=cursor,
            parent_id=parent_id,
            depth=depth,
            replies=replies,
        )

    async def page_for(
        self,
        reader: ReadAccess,
        *,
        post_id: int,
        sort: CommentSort = "best",
        limit: int = 10,
        cursor: str | None = None,
        parent_id: int | None = None,
        depth: int = 2,
        replies: int = 3,
    ) -> CommentPage:
        """:meth:`page` on the fast path (``GET /posts/{id}/comments``): the reader's session
        is checked in the same round trip as the post's visibility unless a plugin's filters
        need the reader first.

        :raises PostNotFound: no such post, or one the reader may not see.
        :raises CommentNotFound: ``parent_id`` names no visible comment of the post.
        :raises InvalidCursor: ``cursor`` is not one postkit issued for this sort.
        :raises InvalidToken: the reader's token is no longer good.
        """
        return await self._page(
            reader,
            post_id=post_id,
            sort=sort,
            limit=limit,
            cursor=cursor,
            parent_id=parent_id,
            depth=depth,
            replies=replies,
        )

    async def _page(
        self,
        reader: _Reader,
        *,
        post_id: int,
        sort: CommentSort,
        limit: int,
        cursor: str | None,
        parent_id: int | None,
        depth: int,
        replies: int,
    ) -> CommentPage:
        try:
            after = _decode_cursor(cursor, sort) if cursor else None
        except InvalidCursor:
            await reader.user()  # a bad token is a 401 before a bad cursor is a 400
            raise
        # The first statement: the session check rides on it (later ones find it done).
        await self._check_post(reader, post_id)
        filters = await self._reader_filters("comment_query_filters", reader)
        if parent_id is not None:
            parent = await self._visible_row(reader, parent_id)
            if parent["post_id"] != post_id:
                raise CommentNotFound()
        statement, params = _page_query(
            post_id=post_id,
            parent_id=parent_id,
            sort=sort,
            limit=limit + 1,
            after=after,
            filters=filters,
        )
        rows = await reader.fetch(statement, params)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = _encode_cursor(sort, last[_SORT_INDEX[sort]], last[0])
        items = [_row_dict(row) for row in rows]
        if parent_id is None and depth > 0 and replies > 0:
            await self._nest_replies(reader, items, post_id, sort, depth, replies, filters)
        return CommentPage(comments=items, next_cursor=next_cursor)

    async def _nest_replies(
        self,
        reader: _Reader,
        level: list[dict[str, Any]],
        post_id: int,
        sort: CommentSort,
        depth: int,
        replies: int,
        filters: Sequence[ColumnElement[bool]],
    ) -> None:
        statement = _replies_query(sort, filters) if filters else _replies_template(sort)
        budget = TREE_MAX_REPLIES
        for _ in range(depth):
            # Only comments with replies to fetch, and no more of them than the budget allows.
            parents = {item["id"]: item for item in level if item["reply_count"] > 0}
            allowed = min(len(parents), budget // replies)
            if allowed <= 0:
                return
            parent_ids = list(parents)[:allowed]
            params = {"post_id": post_id, "parent_ids": parent_ids, "replies": replies}
            rows = await reader.fetch(statement, params)
            level = []
            for row in rows:
                item = _row_dict(row)
                parents[item["parent_id"]]["replies"].append(item)
                level.append(item)
            budget -= len(rows)

    async def get(
        self, session: AsyncSession, *, comment_id: int, user: User | None
    ) -> dict[str, Any]:
        """One comment ``user`` may see (a deleted one with replies too, as its placeholder).

        :raises CommentNotFound: no such comment, or one ``user`` may not see.
        """
        return await self._visible_row(_SessionReader(session, user), comment_id)

    async def get_for(self, reader: ReadAccess, *, comment_id: int) -> dict[str, Any]:
        """:meth:`get` on the fast path (``GET /comments/{id}``), with the reader's session
        checked in the same round trip unless a plugin's filters need the reader first.

        :raises CommentNotFound: no such comment, or one the reader may not see.
        :raises InvalidToken: the reader's token is no longer good.
        """
        return await self._visible_row(reader, comment_id)

    async def revisions(
        self,
        session: AsyncSession,
        *,
        comment_id: int,
        user: User | None,
        limit: int = 10,
        cursor: str | None = None,
    ) -> RevisionPage:
        """A comment's previous bodies, newest first (``revisions_visible_to``: whoever may see
        the comment, or its author only).

        :raises CommentNotFound: no such comment, one ``user`` may not see, or (with
            ``revisions_visible_to="author"``) one ``user`` did not write.
        :raises InvalidCursor: ``cursor`` is not one postkit issued for revisions.
        """
        after = _decode_cursor(cursor, "revisions") if cursor else None
        comment = await self._visible_row(_SessionReader(session, user), comment_id)
        if self.revisions_visible_to == "author":
            author = comment["author"]
            if user is None or author is None or author["id"] != user.id:
                raise CommentNotFound()
        params: dict[str, Any] = {"comment_id": comment_id, "limit": limit + 1}
        if after is not None:
            params["after_id"] = after[1]
        rows = (await session.execute(_revisions_template(after is not None), params)).all()
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = _encode_cursor("revisions", rows[-1].id, rows[-1].id)
        return RevisionPage(revisions=[row._asdict() for row in rows], next_cursor=next_cursor)

    # --- Writes ---------------------------------------------------------------------------------

    async def create(
        self, session: AsyncSession, *, post_id: int, data: dict[str, Any], user: User
    ) -> dict[str, Any]:
        """Write ``user``'s comment on a post they can see (a reply when ``data`` has a
        ``parent_id``), and commit.

        :raises PostNotFound: no such post, or one ``user`` may not see.
        :raises InvalidParent: ``parent_id`` names no comment of this post ``user`` can see.
        :raises ParentDeleted: the parent was deleted (before or while replying).
        :raises CommentTooDeep: the reply would be deeper than ``comment_max_depth``.
        :raises CommentRejected: a ``validate_comment`` plugin refused it.
        """
        post = await self.posts.find(session, post_id=post_id, user=user)
        parent: Comment | None = None
        parent_id = data.get("parent_id")
        if parent_id is not None:
            parent = await self._find_parent(session, parent_id, post, user)
        depth = parent.depth + 1 if parent is not None else 1
        if depth > self.max_depth:
            raise CommentTooDeep(self.max_depth)
        await self.hooks.call(
            "validate_comment", data=data, user=user, post=post, parent=parent, existing=None
        )
        now = utcnow()
        comment = Comment(
            post_id=post.id,
            parent_id=parent.id if parent is not None else None,
            author_id=user.id,
            body=data["body"],
            depth=depth,
            created_at=now,
            updated_at=now,
            score=0,
            upvotes=0,
            downvotes=0,
            reply_count=0,
            **rank_scores(score=0, upvotes=0, downvotes=0, created_at=now),
        )
        await self.hooks.call("before_comment_save", comment=comment, user=user)
        # Lock order: the post's row, then the parent's.
        if await self._move_comment_count(session, post.id, 1) is None:
            raise PostNotFound()  # deleted since it was read
        if parent is not None:
            moved = await session.execute(
                update(_comments)
                .where(_comments.c.id == parent.id, _comments.c.deleted_at.is_(None))
                .values(reply_count=_comments.c.reply_count + 1)
                .returning(_comments.c.id)
            )
            if moved.first() is None:
                await session.rollback()
                raise ParentDeleted()
        session.add(comment)
        await session.commit()
        await self.hooks.notify("after_comment_create", comment=comment, user=user)
        return serialize_comment(comment, username=user.username)

    async def _find_parent(
        self, session: AsyncSession, parent_id: int, post: Post, user: User
    ) -> Comment:
        if not 1 <= parent_id <= MAX_ID:
            raise InvalidParent()
        statement = select(Comment).where(Comment.id == parent_id, Comment.post_id == post.id)
        filters = await self._comment_filters(user)
        if filters:
            statement = statement.where(*filters)
        parent = (await session.execute(statement)).scalar_one_or_none()
        if parent is None:
            raise InvalidParent()
        if parent.deleted_at is not None:
            raise ParentDeleted()
        return parent

    async def _move_comment_count(
        self, session: AsyncSession, post_id: int, delta: int
    ) -> int | None:
        moved = await session.execute(
            update(_posts)
            .where(_posts.c.id == post_id)
            # A comment is not an edit of the post: keep updated_at.
            .values(comment_count=_posts.c.comment_count + delta, updated_at=_posts.c.updated_at)
            .returning(_posts.c.comment_count)
        )
        count: int | None = moved.scalar_one_or_none()
        return count

    async def _check_may_modify(self, comment: Comment, user: User, action: str) -> None:
        # postkit's own answer (the author only) is a trylast default plugin.
        allowed = await self.hooks.first(
            "can_modify_comment", comment=comment, user=user, action=action
        )
        if not allowed:
            raise NotCommentAuthor(action)

    async def _author_name(
        self, session: AsyncSession, author_id: int | None, user: User
    ) -> str | None:
        if author_id is None:
            return None
        if author_id == user.id:
            return user.username
        name: str | None = await session.scalar(select(User.username).where(User.id == author_id))
        return name

    async def update(
        self, session: AsyncSession, *, comment_id: int, data: dict[str, Any], user: User
    ) -> dict[str, Any]:
        """Replace the body of a comment ``user`` may modify, keep the previous body in its
        revisions, and commit.

        :raises CommentNotFound: no such comment, a deleted one, or one ``user`` may not see.
        :raises NotCommentAuthor: ``can_modify_comment`` said no.
        :raises CommentRejected: a ``validate_comment`` plugin refused the change.
        """
        comment = await self.find(session, comment_id=comment_id, user=user)
        await self._check_may_modify(comment, user, "update")
        post = await self.posts.find(session, post_id=comment.post_id, user=user)
        parent = None
        if comment.parent_id is not None:
            parent = await session.get(Comment, comment.parent_id)
        await self.hooks.call(
            "validate_comment", data=data, user=user, post=post, parent=parent, existing=comment
        )
        if data["body"] != comment.body:
            now = utcnow()
            # The previous body, read under the comment's row lock (the first write of the
            # transaction on SQLite), so concurrent edits each keep the version they replaced.
            previous = (
                select(
                    _comments.c.id,
                    _comments.c.body,
                    literal(now, UTCDateTime()),
                    literal(user.id),
                )
                .where(_comments.c.id == comment.id, _comments.c.deleted_at.is_(None))
                .with_for_update()
            )
            copied = await session.execute(
                insert(_revisions).from_select(
                    ["comment_id", "body", "created_at", "editor_id"], previous
                )
            )
            if not getattr(copied, "rowcount", 1):
                raise CommentNotFound()  # deleted since it was read
            comment.body = data["body"]
            comment.edited_at = now
            comment.updated_at = now
        await self.hooks.call("before_comment_save", comment=comment, user=user)
        try:
            await session.commit()
        except StaleDataError:
            raise CommentNotFound() from None
        await self.hooks.notify("after_comment_update", comment=comment, user=user, changes=data)
        return serialize_comment(
            comment, username=await self._author_name(session, comment.author_id, user)
        )

    async def delete(self, session: AsyncSession, *, comment_id: int, user: User) -> None:
        """Delete a comment ``user`` may modify, and commit. With replies it stays in the
        thread as a placeholder (body, author and revisions gone); without, it is removed (and
        so is a placeholder parent left with no replies).

        :raises CommentNotFound: no such comment, a deleted one, or one ``user`` may not see.
        :raises NotCommentAuthor: ``can_modify_comment`` said no.
        """
        comment = await self.find(session, comment_id=comment_id, user=user)
        await self._check_may_modify(comment, user, "delete")
        if not await self._delete_one(session, comment.id, comment.post_id):
            await session.rollback()
            raise CommentNotFound()  # a concurrent request deleted it first
        await session.commit()
        await self.hooks.notify("after_comment_delete", comment=comment, user=user)

    async def _delete_one(
        self, session: AsyncSession, comment_id: int, post_id: int, *, keep_body: bool = False
    ) -> bool:
        """Delete one comment that is not deleted yet, in the caller's transaction; False if it
        is gone or already deleted (the caller rolls back).

        Lock order: the post's row (its counter), then the comment, then its ancestors.
        """
        if await self._move_comment_count(session, post_id, -1) is None:
            return False
        state = (
            await session.execute(
                select(_comments.c.reply_count, _comments.c.parent_id)
                .where(_comments.c.id == comment_id, _comments.c.deleted_at.is_(None))
                .with_for_update()
            )
        ).first()
        if state is None:
            return False
        reply_count, parent_id = state
        if reply_count > 0:
            now = utcnow()
            await session.execute(
                update(_comments)
                .where(_comments.c.id == comment_id)
                .values(deleted_at=now, updated_at=now, body=None, author_id=None)
            )
            await session.execute(delete(_revisions).where(_revisions.c.comment_id == comment_id))
            return True
        await session.execute(delete(_comments).where(_comments.c.id == comment_id))
        # Up the thread: one reply fewer; a placeholder left without replies goes too.
        while parent_id is not None:
            parent = (
                await session.execute(
                    update(_comments)
                    .where(_comments.c.id == parent_id)
                    .values(reply_count=_comments.c.reply_count - 1)
                    .returning(
                        _comments.c.reply_count, _comments.c.deleted_at, _comments.c.parent_id
                    )
                )
            ).first()
            if parent is None or parent.reply_count > 0 or parent.deleted_at is None:
                break
            await session.execute(delete(_comments).where(_comments.c.id == parent_id))
            parent_id = parent.parent_id
        return True

    # --- Votes ----------------------------------------------------------------------------------

    async def _weight(self, comment: Comment, user: User, direction: int) -> int:
        weight = await self.hooks.first(
            "comment_vote_weight", comment=comment, user=user, direction=direction
        )
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise TypeError(
                f"comment_vote_weight must answer a positive int or None, not {weight!r}"
            )
        return weight

    async def vote(
        self, session: AsyncSession, *, comment_id: int, user: User, direction: int
    ) -> CommentVoteOutcome:
        """Set ``user``'s vote on a comment they can see to ``direction`` (1 up, -1 down, 0
        none), and commit. Safe to retry: the same vote again changes nothing.

        :raises DownvotesDisabled: ``direction`` is -1 and ``allow_downvotes`` is off.
        :raises CommentNotFound: no such comment, a deleted one, or one ``user`` may not see.
        :raises VoteRejected: a ``validate_comment_vote`` plugin refused it.
        """
        if direction == -1 and not self.allow_downvotes:
            raise DownvotesDisabled()
        comment = await self.find(session, comment_id=comment_id, user=user)
        await self.hooks.call(
            "validate_comment_vote", comment=comment, user=user, direction=direction
        )
        new = direction * await self._weight(comment, user, direction) if direction else 0
        # Locks in the order a delete of the post (post, comments, their votes) or of the
        # comment (post, comment, ancestors) takes them, so that PostgreSQL never finds a
        # cycle: the post's row (FOR KEY SHARE, what the comment's updates check against it),
        # then the comment's (FOR NO KEY UPDATE, what its counter update takes), then the
        # vote's. SQLite, with its one writer, renders neither.
        await session.execute(
            select(_posts.c.id)
            .where(_posts.c.id == comment.post_id)
            .with_for_update(read=True, key_share=True)
        )
        locked = await session.scalar(
            select(_comments.c.id)
            .where(_comments.c.id == comment.id, _comments.c.deleted_at.is_(None))
            .with_for_update(key_share=True)
        )
        if locked is None:
            await session.rollback()
            raise CommentNotFound()  # deleted since it was read
        try:
            old = await self._replace_vote(session, comment.id, user.id, new)
        except IntegrityError:
            raise CommentNotFound() from None  # deleted between the lookup and the vote
        if old == new:
            await session.commit()  # nothing changed; end the transaction now
            return CommentVoteOutcome(
                comment_id=comment.id,
                changed=False,
                direction=direction,
                score=comment.score,
                upvotes=comment.upvotes,
                downvotes=comment.downvotes,
            )
        counts = (
            await session.execute(
                update(_comments)
                .where(_comments.c.id == comment.id)
                .values(
                    score=_comments.c.score + (new - old),
                    upvotes=_comments.c.upvotes + (int(new > 0) - int(old > 0)),
                    downvotes=_comments.c.downvotes + (int(new < 0) - int(old < 0)),
                )
                .returning(
                    _comments.c.score,
                    _comments.c.upvotes,
                    _comments.c.downvotes,
                    _comments.c.created_at,
                )
            )
        ).first()
        if counts is None:
            await session.rollback()
            raise CommentNotFound()
        score, upvotes, downvotes, created_at = counts
        ranks = rank_scores(
            score=score, upvotes=upvotes, downvotes=downvotes, created_at=created_at
        )
        await session.execute(update(_comments).where(_comments.c.id == comment.id).values(**ranks))
        await session.commit()
        for name, value in {
            "score": score, "upvotes": upvotes, "downvotes": downvotes, **ranks
        }.items():  # fmt: skip
            setattr(comment, name, value)
        await self.hooks.notify(
            "after_comment_vote",
            comment=comment,
            user=user,
            direction=direction,
            previous=_sign(old),
        )
        return CommentVoteOutcome(
            comment_id=comment.id,
            changed=True,
            direction=direction,
            score=score,
            upvotes=upvotes,
            downvotes=downvotes,
        )

    async def _replace_vote(
        self, session: AsyncSession, comment_id: int, user_id: int, new: int
    ) -> int:
        """Make ``user_id``'s stored vote weight ``new`` (0: no vote); return the old one.

        The first statement takes the row's lock (a new row's key, or the existing row), so
        the same user racing themselves is serialised and every request sees the vote the
        previous one left.
        """
        key = (_votes.c.user_id == user_id) & (_votes.c.comment_id == comment_id)
        if new == 0:
            removed = await session.execute(delete(_votes).where(key).returning(_votes.c.weight))
            weight: int = removed.scalar_one_or_none() or 0
            return weight
        dialect = session.get_bind().dialect.name
        values = {"user_id": user_id, "comment_id": comment_id, "weight": new}
        while True:
            inserted = (await session.execute(_insert_vote(dialect, values))).scalar_one_or_none()
            if inserted is not None:
                return 0
            old = await session.scalar(select(_votes.c.weight).where(key).with_for_update())
            if old is None:
                continue  # removed since the insert saw it: insert again
            if old != new:
                await session.execute(update(_votes).where(key).values(weight=new))
            return int(old)

    # --- Accounts -------------------------------------------------------------------------------

    async def withdraw_votes(self, session: AsyncSession, *, user_id: int) -> int:
        """Take back every comment vote ``user_id`` cast, moving each comment's counts and
        ranking scores. Call it (in the same transaction) before deleting the user. Returns
        the number of votes removed. Does not commit."""
        removed = (
            await session.execute(
                delete(_votes)
                .where(_votes.c.user_id == user_id)
                .returning(_votes.c.comment_id, _votes.c.weight)
            )
        ).all()
        for comment_id, weight in sorted(removed):
            counts = (
                await session.execute(
                    update(_comments)
                    .where(_comments.c.id == comment_id)
                    .values(
                        score=_comments.c.score - weight,
                        upvotes=_comments.c.upvotes - int(weight > 0),
                        downvotes=_comments.c.downvotes - int(weight < 0),
                    )
                    .returning(
                        _comments.c.score,
                        _comments.c.upvotes,
                        _comments.c.downvotes,
                        _comments.c.created_at,
                    )
                )
            ).first()
            if counts is not None:
                score, upvotes, downvotes, created_at = counts
                ranks = rank_scores(
                    score=score, upvotes=upvotes, downvotes=downvotes, created_at=created_at
                )
                await session.execute(
                    update(_comments).where(_comments.c.id == comment_id).values(**ranks)
                )
        return len(removed)

    async def remove_author(
        self, session: AsyncSession, *, user_id: int, keep_bodies: bool
    ) -> None:
        """What an account's deletion does to its comments, in the deletion's transaction.

        ``keep_bodies`` (``account_deletion_posts="anonymize"``): every comment stays, with
        its author hidden. Otherwise each is deleted as ``DELETE /comments/{id}`` would
        (placeholders for those with replies), except those on the account's own posts, which
        go with the posts. Counters stay exact either way. Does not commit.
        """
        if keep_bodies:
            await session.execute(
                update(_comments).where(_comments.c.author_id == user_id).values(author_id=None)
            )
            return
        # Post by post (the lock order of every comment write), deepest replies first, so a
        # comment is decided once its own replies by the same author are gone.
        rows = (
            await session.execute(
                select(_comments.c.id, _comments.c.post_id)
                .join(_posts, _posts.c.id == _comments.c.post_id)
                .where(
                    _comments.c.author_id == user_id,
                    _comments.c.deleted_at.is_(None),
                    _posts.c.owner_id != user_id,
                )
                .order_by(_comments.c.post_id, _comments.c.depth.desc(), _comments.c.id)
            )
        ).all()
        for comment_id, post_id in rows:
            await self._delete_one(session, comment_id, post_id)
        await session.execute(
            update(_comments).where(_comments.c.author_id == user_id).values(author_id=None)
        )
