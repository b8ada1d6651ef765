"""Post rules: visibility, ownership, the feed query, and the post hooks.

Reads select plain columns (the post, its ``vote_count`` counter and its owner's id and username)
in ONE query and build response dicts directly; no ORM objects are created unless a plugin
implements ``extra_post_fields``. Writes load the post as an ORM object (with its owner), run
the hooks, commit, then run the "after" hooks.

Every read, and the lookup before every update, delete and vote, applies the same filters: a
draft is visible only to its owner, and every ``post_query_filters`` answer must hold.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, cast

from sqlalchemy import Select, Table, bindparam, delete, select, true, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.elements import ColumnElement

from postkit.driver import Transaction
from postkit.errors import InvalidCursor, NotPostOwner, PostNotFound
from postkit.models import MAX_ID, Post, PostRevision, User, detached, utcnow
from postkit.plugins import HookRunner
from postkit.ranking import RANKS
from postkit.services.sessions import ReadAccess

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "TOP_WINDOWS",
    "FeedPage",
    "Posts",
    "RevisionPage",
    "Sort",
    "TopWindow",
    "decode_cursor",
    "encode_cursor",
    "feed_statement",
    "like_pattern",
    "post_statement",
    "serialize_post",
]

Sort = Literal["new", "top", "hot", "best", "controversial"]
TopWindow = Literal["day", "week", "month", "year", "all"]
FeedSelect: TypeAlias = "Select[Unpack[tuple[Any, ...]]]"

TOP_WINDOWS: dict[str, timedelta] = {
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
    "year": timedelta(days=365),
}
"""How far back ``sort=top&t=...`` looks (``all``: no limit)."""

_RANK_SORTS = frozenset(RANKS)
"""The sorts served from a stored ranking score (``<sort>_rank``, a float)."""

_SORT_KEYS: dict[str, Any] = {
    "new": Post.created_at,
    "top": Post.vote_count,
    "hot": Post.hot_rank,
    "best": Post.best_rank,
    "controversial": Post.controversial_rank,
}

_FEED_COLUMNS = (
    Post.id,
    Post.title,
    Post.content,
    Post.published,
    Post.created_at,
    Post.updated_at,
    Post.owner_id,
    Post.vote_count,
    Post.comment_count,
    User.username,
    Post.upvotes,
    Post.downvotes,
    Post.edited_at,
    Post.hot_rank,
    Post.best_rank,
    Post.controversial_rank,
)


_FEED_KEYS = [column.key for column in _FEED_COLUMNS]
"""The feed's column names, by position (driver rows have no attribute names)."""

_VERSIONED_FIELDS = ("title", "content", "published")
"""What a revision keeps of a post."""
_EDIT_FIELDS = frozenset({"title", "content"})
"""The fields whose change is an edit (moves ``edited_at``); publishing is not one."""
_LOCKED_FIELDS = (
    *_VERSIONED_FIELDS,
    "updated_at",
    "edited_at",
    "vote_count",
    "upvotes",
    "downvotes",
)
"""What an update reads again under its row lock (all a response shows that may have moved)."""


# --- Filters ------------------------------------------------------------------------------------


def _visible_to_reader() -> ColumnElement[bool]:
    """The draft rule, for a bound ``reader_id``: published posts, plus the reader's own drafts
    (``None`` for an anonymous reader: ``owner_id = NULL`` is never true, so drafts stay hidden).
    """
    return (Post.published == true()) | (Post.owner_id == bindparam("reader_id"))


def like_pattern(term: str) -> str:
    """A LIKE pattern matching ``term`` literally anywhere (escape character: backslash)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# --- Cursors ------------------------------------------------------------------------------------


def cursor_kind(sort: Sort, window: TopWindow = "all") -> str:
    """What a feed cursor is for: the sort, and for ``top`` its window (``top:week``); a cursor
    of one kind is refused by every other."""
    return f"top:{window}" if sort == "top" and window != "all" else sort


def encode_cursor(kind: str, key: datetime | int | float, post_id: int) -> str:
    """An opaque cursor naming the last item of a page (its sort key and id).

    ``kind`` is what the cursor pages (:func:`cursor_kind`; ``revisions``). Float keys are
    written as Python's shortest exact representation, so they come back bit for bit.
    """
    value = key.isoformat() if isinstance(key, datetime) else key
    raw = json.dumps({"s": kind, "k": value, "i": post_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a key")


def decode_cursor(cursor: str, kind: str) -> tuple[datetime | int | float, int]:
    """The sort key and id a cursor names.

    Timestamps come back in UTC; one that cannot be (``0001-01-01T00:00:00+14:00`` is before the
    first representable instant) is refused like any other forged cursor, and so are ranks that
    are not finite floats.

    :raises InvalidCursor: a cursor postkit did not issue, or issued for another kind of page.
    """
    payload = read_cursor(cursor)
    if payload["s"] != kind:
        raise InvalidCursor(f"it belongs to sort={payload['s']!r}, not sort={kind!r}")
    post_id = payload["i"]
    if type(post_id) is not int or not 0 <= post_id <= MAX_ID:
        raise InvalidCursor("bad post id")
    key = payload["k"]
    if kind in _RANK_SORTS:
        if type(key) is not float or not math.isfinite(key):
            raise InvalidCursor("bad rank")
        return key, post_id
    if kind == "top" or kind.startswith("top:") or kind == "revisions":
        if type(key) is not int or not -(2**31) <= key <= MAX_ID:
            raise InvalidCursor("bad vote count")
        return key, post_id
    return cursor_timestamp(key), post_id


def read_cursor(cursor: str) -> dict[str, Any]:
    """The payload of a cursor :func:`encode_cursor` wrote (``s``, ``k``, ``i``), unchecked
    beyond its shape: each kind of page checks its own key and id.

    :raises InvalidCursor: not a cursor postkit issued.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw, parse_constant=_refuse_constant)
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidCursor("not a cursor postkit issued") from None
    if not isinstance(payload, dict) or set(payload) != {"s", "k", "i"}:
        raise InvalidCursor("not a cursor postkit issued")
    return payload


def cursor_timestamp(key: Any) -> datetime:
    """A cursor's timestamp key, in UTC.

    :raises InvalidCursor: not an aware ISO timestamp, or one with no UTC instant.
    """
    try:
        created_at = datetime.fromisoformat(key) if isinstance(key, str) else None
        if created_at is not None and created_at.tzinfo is not None:
            created_at = created_at.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        raise InvalidCursor("bad timestamp")
    return created_at


def next_cursor(sort: Sort, window: TopWindow, row: Any) -> str:
    """The cursor of the page after the one ending with ``row`` (a feed row, by position)."""
    key = row[_FEED_KEYS.index(_SORT_KEYS[sort].key)]
    return encode_cursor(cursor_kind(sort, window), key, row[0])


# --- Statements ---------------------------------------------------------------------------------


_posts_table = cast(Table, Post.__table__)
_POST_FIELDS = tuple(column.key for column in _posts_table.columns)


@functools.cache
def _find_columns_statement(lock: bool = False) -> FeedSelect:
    """:func:`_find_post_statement` as plain columns (every column of the post, then its
    owner's username), for writes on the fast path; ``lock``: with the post's row lock."""
    statement: FeedSelect = (
        select(*_posts_table.columns, User.username.label("owner_username"))
        .join(User, User.id == Post.owner_id)
        .where(Post.id == bindparam("post_id"), _visible_to_reader())
    )
    return _locked(statement) if lock else statement


def _locked(statement: Any) -> Any:
    # FOR NO KEY UPDATE OF the post's row (nothing on SQLite, whose writer holds the one
    # write lock): the lock a counter update takes, taken first, so that a transaction that
    # then locks rows referring to the post (votes) never waits to upgrade its lock on the
    # post while a delete of the post waits for those rows (a deadlock on PostgreSQL).
    return statement.with_for_update(key_share=True, of=_posts_table)


def _detached_post(row: Sequence[Any]) -> Post:
    # A Post outside any session, as if loaded and detached, with its owner's public part.
    post = detached(Post, zip(_POST_FIELDS, row, strict=False))
    owner = detached(User, (("id", post.owner_id), ("username", row[len(_POST_FIELDS)])))
    set_committed_value(post, "owner", owner)
    return post


@functools.cache
def _find_post_statement(lock: bool = False) -> Select[Post]:
    """:meth:`Posts.find`'s statement, for bound ``post_id`` and ``reader_id``; ``lock``: with
    the post's row lock."""
    statement: Select[Post] = (
        select(Post)
        .join(Post.owner)
        .options(contains_eager(Post.owner))
        .where(Post.id == bindparam("post_id"), _visible_to_reader())
    )
    return _locked(statement) if lock else statement


@functools.cache
def _feed_template(
    sort: Sort, search: bool, after: bool, skip: bool, since: bool = False
) -> FeedSelect:
    """``GET /posts`` for one query shape, built once, with bound parameters: ``reader_id``,
    ``limit``, and as the shape needs ``pattern``, ``after_key``/``after_id``, ``skip`` and
    ``since`` (the start of ``sort=top``'s window)."""
    key_column: Any = _SORT_KEYS[sort]
    statement: FeedSelect = (
        select(*_FEED_COLUMNS).join(User, User.id == Post.owner_id).where(_visible_to_reader())
    )
    if search:
        # ILIKE, which PostgreSQL answers from the trigram indexes.
        pattern = bindparam("pattern", type_=Post.title.type)
        statement = statement.where(
            Post.title.ilike(pattern, escape="\\") | Post.content.ilike(pattern, escape="\\")
        )
    if since:
        statement = statement.where(
            Post.created_at >= bindparam("since", type_=Post.created_at.type)
        )
    if after:
        statement = statement.where(
            tuple_(key_column, Post.id)
            < tuple_(
                bindparam("after_key", type_=key_column.type),
                bindparam("after_id", type_=Post.id.type),
            )
        )
    statement = statement.order_by(key_column.desc(), Post.id.desc()).limit(bindparam("limit"))
    if skip:
        statement = statement.offset(bindparam("skip"))
    return statement


@functools.cache
def _post_by_id() -> FeedSelect:
    """``GET /posts/{id}``: the feed's columns for one post, for bound ``post_id`` and
    ``reader_id``."""
    statement: FeedSelect = (
        select(*_FEED_COLUMNS)
        .join(User, User.id == Post.owner_id)
        .where(Post.id == bindparam("post_id"), _visible_to_reader())
    )
    return statement


def _feed_query(
    *,
    reader_id: int | None,
    plugin_filters: Sequence[ColumnElement[bool]],
    limit: int,
    skip: int,
    search: str | None,
    sort: Sort,
    after: tuple[datetime | int | float, int] | None,
    since: datetime | None = None,
) -> tuple[FeedSelect, dict[str, Any]]:
    # The prebuilt statement for the query shape (building it per request cost 10-18% of the
    # feed's CPU time), plus the plugins' filters, and the values of its parameters.
    statement = _feed_template(sort, bool(search), after is not None, bool(skip), since is not None)
    if plugin_filters:
        statement = statement.where(*plugin_filters)
    params: dict[str, Any] = {"reader_id": reader_id, "limit": limit}
    if since is not None:
        params["since"] = since
    if search:
        params["pattern"] = like_pattern(search)
    if after is not None:
        params["after_key"], params["after_id"] = after
    if skip:
        params["skip"] = skip
    return statement, params


def _post_query(
    post_id: int, *, reader_id: int | None, plugin_filters: Sequence[ColumnElement[bool]]
) -> tuple[FeedSelect, dict[str, Any]]:
    statement = _post_by_id()
    if plugin_filters:
        statement = statement.where(*plugin_filters)
    return statement, {"post_id": post_id, "reader_id": reader_id}


def feed_statement(
    *,
    reader_id: int | None,
    limit: int,
    skip: int = 0,
    search: str | None = None,
    sort: Sort = "new",
    after: tuple[datetime | int | float, int] | None = None,
    plugin_filters: Sequence[ColumnElement[bool]] = (),
    since: datetime | None = None,
) -> FeedSelect:
    """The statement ``GET /posts`` runs, with its parameters bound (for EXPLAIN and tests).

    :param reader_id: the reader's user id, or ``None`` for an anonymous reader.
    :param limit: rows to fetch (the route asks for one more than the page, to know if another
        page follows).
    :param search: matched case-insensitively and literally against title or content.
    :param after: the decoded cursor: only posts after it in ``sort`` order.
    :param plugin_filters: the plugins' ``post_query_filters`` answers.
    :param since: only posts created at or after it (``sort=top``'s window).
    """
    statement, params = _feed_query(
        reader_id=reader_id,
        plugin_filters=plugin_filters,
        limit=limit,
        skip=skip,
        search=search,
        sort=sort,
        after=after,
        since=since,
    )
    return statement.params(params)


def post_statement(
    post_id: int,
    *,
    reader_id: int | None,
    plugin_filters: Sequence[ColumnElement[bool]] = (),
) -> FeedSelect:
    """The statement ``GET /posts/{id}`` runs, with its parameters bound (for EXPLAIN and
    tests)."""
    statement, params = _post_query(post_id, reader_id=reader_id, plugin_filters=plugin_filters)
    return statement.params(params)


class _Reader(Protocol):
    """Where a read runs and for whom: a :class:`ReadAccess` (the fast path) or an ORM session
    with a known user (:class:`_SessionReader`)."""

    @property
    def reader_id(self) -> int | None: ...

    async def user(self) -> User | None: ...

    async def fetch(
        self, statement: FeedSelect, params: dict[str, Any], *, order_desc: tuple[str, ...] = ()
    ) -> Sequence[Any]: ...


class _SessionReader:
    """A host's read: its ORM session and the user it already authenticated."""

    def __init__(self, session: AsyncSession, user: User | None) -> None:
        self.session = session
        self._user = user
        self.reader_id = user.id if user is not None else None

    async def user(self) -> User | None:
        return self._user

    async def fetch(
        self, statement: FeedSelect, params: dict[str, Any], *, order_desc: tuple[str, ...] = ()
    ) -> Sequence[Any]:
        return (await self.session.execute(statement, params)).all()


# --- Serialisation ------------------------------------------------------------------------------


def _row_dict(row: Any) -> dict[str, Any]:
    (
        post_id,
        title,
        content,
        published,
        created_at,
        updated_at,
        owner_id,
        score,
        comment_count,
        username,
        upvotes,
        downvotes,
        edited_at,
        *_ranks,
    ) = row
    return {
        "id": post_id,
        "title": title,
        "content": content,
        "published": published,
        "created_at": created_at,
        "updated_at": updated_at,
        "edited_at": edited_at,
        "owner_id": owner_id,
        "owner": {"id": owner_id, "username": username},
        "score": score,
        "upvotes": upvotes,
        "downvotes": downvotes,
        "votes": score,
        "comment_count": comment_count,
        "extra": {},
    }


def serialize_post(post: Post, *, username: str) -> dict[str, Any]:
    """The response dict of an ORM post (after a write): the feed's shape."""
    return _row_dict(
        (
            post.id,
            post.title,
            post.content,
            post.published,
            post.created_at,
            post.updated_at,
            post.owner_id,
            post.vote_count,
            post.comment_count or 0,
            username,
            post.upvotes,
            post.downvotes,
            post.edited_at,
        )
    )


def _post_from_dict(item: dict[str, Any]) -> Post:
    # A detached Post for plugins reading a serialised row; never added to a session.
    post = Post(
        id=item["id"],
        title=item["title"],
        content=item["content"],
        published=item["published"],
        created_at=item["created_at"],
        updated_at=item["updated_at"],
        edited_at=item["edited_at"],
        owner_id=item["owner_id"],
        vote_count=item["score"],
        upvotes=item["upvotes"],
        downvotes=item["downvotes"],
        comment_count=item["comment_count"],
    )
    set_committed_value(
        post, "owner", User(id=item["owner_id"], username=item["owner"]["username"])
    )
    return post


def revision_dict(revision: PostRevision) -> dict[str, Any]:
    """The response dict of a post revision."""
    return {
        "id": revision.id,
        "post_id": revision.post_id,
        "title": revision.title,
        "content": revision.content,
        "published": revision.published,
        "replaced_at": revision.replaced_at,
    }


@dataclass
class FeedPage:
    """One page of the feed: response dicts, and the cursor of the next page if one may follow."""

    posts: list[dict[str, Any]]
    next_cursor: str | None


@dataclass
class RevisionPage:
    """One page of a post's edit history, newest first, and the next page's cursor if any."""

    revisions: list[dict[str, Any]]
    next_cursor: str | None


class Posts:
    """Post rules (``kit.posts``): what a reader may see, who may change a post, and the post
    hooks around every write.

    :param hooks: the kit's plugin hooks.
    :param revisions_visible_to: the ``revisions_visible_to`` setting: ``"readers"`` (whoever
        may see the post) or ``"author"`` (its author only) may list a post's edit history.
    """

    def __init__(self, hooks: HookRunner, *, revisions_visible_to: str = "readers") -> None:
        self.hooks = hooks
        self.revisions_visible_to = revisions_visible_to

    async def ranks(
        self, item: Post, *, score: int, upvotes: int, downvotes: int, created_at: datetime
    ) -> dict[str, float]:
        """The stored ranking scores of ``item`` with these counters, by column name
        (``hot_rank``, ...): each the first ``rank_score`` answer (postkit's own is
        :mod:`postkit.ranking`, a trylast default plugin)."""
        ranks: dict[str, float] = {}
        for rank in RANKS:
            value = await self.hooks.first(
                "rank_score",
                rank=rank,
                item=item,
                score=score,
                upvotes=upvotes,
                downvotes=downvotes,
                created_at=created_at,
            )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(
                    f"rank_score must answer a float or None, not {type(value).__name__}"
                )
            if not math.isfinite(value):
                raise TypeError(f"rank_score must answer a finite number, not {value!r}")
            ranks[f"{rank}_rank"] = float(value)
        return ranks

    async def _plugin_filters(self, user: User | None) -> list[ColumnElement[bool]]:
        """Every plugin's ``post_query_filters`` answers: conditions a visible post must meet."""
        answers = await self.hooks.call("post_query_filters", user=user)
        return [condition for answer in answers for condition in answer]

    async def _add_extra(
        self,
        items: list[dict[str, Any]],
        user: User | None,
        posts: Sequence[Post] | None = None,
    ) -> None:
        if not self.hooks.has_implementations("extra_post_fields"):
            return
        for index, item in enumerate(items):
            post = posts[index] if posts is not None else _post_from_dict(item)
            extra: dict[str, Any] = item["extra"]
            for answer in await self.hooks.call("extra_post_fields", post=post, user=user):
                for key, value in answer.items():
                    extra.setdefault(key, value)

    # --- Reads ----------------------------------------------------------------------------------

    async def feed(
        self,
        session: AsyncSession,
        *,
        user: User | None,
        limit: int,
        skip: int = 0,
        search: str | None = None,
        sort: Sort = "new",
        cursor: str | None = None,
        window: TopWindow = "all",
    ) -> FeedPage:
        """A page of the posts ``user`` may see, in ``sort`` order: newest, highest score
        (created within ``window`` for ``top``), or highest stored rank.

        :raises InvalidCursor: ``cursor`` is not one postkit issued for ``sort`` (and
            ``window``).
        """
        return await self._feed(
            _SessionReader(session, user),
            limit=limit,
            skip=skip,
            search=search,
            sort=sort,
            cursor=cursor,
            window=window,
        )

    async def feed_for(
        self,
        reader: ReadAccess,
        *,
        limit: int,
        skip: int = 0,
        search: str | None = None,
        sort: Sort = "new",
        cursor: str | None = None,
        window: TopWindow = "all",
    ) -> FeedPage:
        """:meth:`feed` on the fast path (``GET /posts``): the reader's session is checked in
        the same round trip as the page unless a plugin's filters need the reader first.

        :raises InvalidCursor: ``cursor`` is not one postkit issued for ``sort``.
        :raises InvalidToken: the reader's token is no longer good.
        """
        return await self._feed(
            reader,
            limit=limit,
            skip=skip,
            search=search,
            sort=sort,
            cursor=cursor,
            window=window,
        )

    async def _reader_filters(self, reader: _Reader) -> list[ColumnElement[bool]]:
        # Filters need the reader before the query; without any, the check rides on the read.
        if not self.hooks.has_implementations("post_query_filters"):
            return []
        return await self._plugin_filters(await reader.user())

    async def _feed(
        self,
        reader: _Reader,
        *,
        limit: int,
        skip: int,
        search: str | None,
        sort: Sort,
        cursor: str | None,
        window: TopWindow,
    ) -> FeedPage:
        try:
            after = decode_cursor(cursor, cursor_kind(sort, window)) if cursor else None
        except InvalidCursor:
            await reader.user()  # a bad token is a 401 before a bad cursor is a 400
            raise
        since = utcnow() - TOP_WINDOWS[window] if sort == "top" and window != "all" else None
        statement, params = _feed_query(
            reader_id=reader.reader_id,
            plugin_filters=await self._reader_filters(reader),
            limit=limit + 1,
            skip=skip,
            search=search,
            sort=sort,
            after=after,
            since=since,
        )
        key = _SORT_KEYS[sort].key
        rows = await reader.fetch(statement, params, order_desc=(key, "id"))
        cursor_after = None
        if len(rows) > limit:
            rows = rows[:limit]
            cursor_after = next_cursor(sort, window, rows[-1])
        items = [_row_dict(row) for row in rows]
        if self.hooks.has_implementations("extra_post_fields"):
            await self._add_extra(items, await reader.user())
        return FeedPage(posts=items, next_cursor=cursor_after)

    async def get(
        self, session: AsyncSession, *, post_id: int, user: User | None
    ) -> dict[str, Any]:
        """One post ``user`` may see, as its response dict.

        :raises PostNotFound: no such post, or one ``user`` may not see.
        """
        return await self._get(_SessionReader(session, user), post_id)

    async def get_for(self, reader: ReadAccess, *, post_id: int) -> dict[str, Any]:
        """:meth:`get` on the fast path (``GET /posts/{id}``), with the reader's session
        checked in the same round trip.

        :raises PostNotFound: no such post, or one the reader may not see.
        :raises InvalidToken: the reader's token is no longer good.
        """
        return await self._get(reader, post_id)

    async def _get(self, reader: _Reader, post_id: int) -> dict[str, Any]:
        if not 1 <= post_id <= MAX_ID:
            await reader.user()  # a bad token is still a 401, whatever the id
            raise PostNotFound()
        statement, params = _post_query(
            post_id,
            reader_id=reader.reader_id,
            plugin_filters=await self._reader_filters(reader),
        )
        rows = await reader.fetch(statement, params)
        if not rows:
            raise PostNotFound()
        items = [_row_dict(rows[0])]
        if self.hooks.has_implementations("extra_post_fields"):
            await self._add_extra(items, await reader.user())
        return items[0]

    async def find(
        self, session: AsyncSession, *, post_id: int, user: User | None, lock: bool = False
    ) -> Post:
        """The ORM post ``user`` may see (owner loaded), for a write, a vote or a host route
        that acts on posts (bookmarks, reports)::

            post = await kit.posts.find(session, post_id=post_id, user=user)

        The same rules as every read: drafts only for their owner, and every plugin's
        ``post_query_filters``.

        ``lock=True`` also locks the post's row until the transaction ends (``FOR NO KEY
        UPDATE``, as an update of its counters would), before the caller touches rows that
        refer to it: how a vote avoids deadlocking with a delete of the post.

        :raises PostNotFound: no such post, or one ``user`` may not see (a host route answers
            it 404 with no check of its own).
        """
        if not 1 <= post_id <= MAX_ID:
            raise PostNotFound()
        statement = _find_post_statement(lock)
        plugin_filters = await self._plugin_filters(user)
        if plugin_filters:
            statement = statement.where(*plugin_filters)
        post = (
            await session.execute(
                statement, {"post_id": post_id, "reader_id": user.id if user is not None else None}
            )
        ).scalar_one_or_none()
        if post is None:
            raise PostNotFound()
        return post

    async def find_in(
        self, transaction: Transaction, *, post_id: int, user: User, lock: bool = False
    ) -> Post:
        """:meth:`find` on the fast path of writes: the same rules (and ``lock``), in
        ``transaction``; the post comes back detached, with its owner's id and username.

        :raises PostNotFound: no such post, or one ``user`` may not see.
        """
        if not 1 <= post_id <= MAX_ID:
            raise PostNotFound()
        statement = _find_columns_statement(lock)
        plugin_filters = await self._plugin_filters(user)
        if plugin_filters:
            statement = statement.where(*plugin_filters)
        rows = await transaction.execute(statement, {"post_id": post_id, "reader_id": user.id})
        if not rows:
            raise PostNotFound()
        return _detached_post(rows[0])

    # --- Writes ---------------------------------------------------------------------------------

    async def _respond(self, post: Post, user: User) -> dict[str, Any]:
        item = serialize_post(post, username=post.owner.username)
        await self._add_extra([item], user, [post])
        return item

    async def create(
        self, session: AsyncSession, *, data: dict[str, Any], user: User
    ) -> dict[str, Any]:
        """Create a post owned by ``user`` from ``data`` (title, content, published) and commit.

        :raises PostRejected: a ``validate_post`` plugin refused it.
        """
        await self.hooks.call("validate_post", data=data, user=user, existing=None)
        post = Post(
            title=data["title"],
            content=data["content"],
            published=data.get("published", True),
            owner_id=user.id,
            created_at=utcnow(),
            vote_count=0,
            upvotes=0,
            downvotes=0,
        )
        set_committed_value(post, "owner", user)
        session.add(post)
        await self.hooks.call("before_post_save", post=post, user=user)
        # hot depends on the creation time, which never changes: rank the post as it is made.
        for column, value in (
            await self.ranks(post, score=0, upvotes=0, downvotes=0, created_at=post.created_at)
        ).items():
            setattr(post, column, value)
        await session.commit()
        await self.hooks.notify("after_post_create", post=post, user=user)
        return await self._respond(post, user)

    async def _check_may_modify(self, post: Post, user: User, action: str) -> None:
        # postkit's own answer (owner only) is a trylast default plugin, so there is always one.
        allowed = await self.hooks.first("can_modify_post", post=post, user=user, action=action)
        if not allowed:
            raise NotPostOwner(action)

    async def update(
        self, session: AsyncSession, *, post_id: int, changes: dict[str, Any], user: User
    ) -> dict[str, Any]:
        """Apply ``changes`` (all fields for PUT, the sent ones for PATCH) to a post ``user`` may
        modify, and commit.

        :raises PostNotFound: no such post, or one ``user`` may not see.
        :raises NotPostOwner: ``can_modify_post`` said no.
        :raises PostRejected: a ``validate_post`` plugin refused the changes.
        """
        post = await self.find(session, post_id=post_id, user=user)
        previous = await self._lock_for_update(session, post)
        await self._check_may_modify(post, user, "update")
        await self.hooks.call("validate_post", data=changes, user=user, existing=post)
        for field, value in changes.items():
            setattr(post, field, value)
        await self.hooks.call("before_post_save", post=post, user=user)
        self._record_revision(session, post, previous)
        try:
            await session.commit()
        except (StaleDataError, IntegrityError):
            # The post was deleted by a concurrent request after it was read (its revision's
            # reference to it then fails, if the update itself did not).
            raise PostNotFound() from None
        await self.hooks.notify("after_post_update", post=post, user=user, changes=changes)
        return await self._respond(post, user)

    async def _lock_for_update(self, session: AsyncSession, post: Post) -> dict[str, Any]:
        """Lock ``post``'s row until the commit (PostgreSQL; SQLite has one writer at a time) and
        bring ``post`` up to date with it: concurrent edits then queue, and each revision holds
        the version its edit replaced. Returns the versioned fields as they were."""
        if session.get_bind().dialect.name == "sqlite":
            # SQLite reads outside a transaction until the first write: take the write lock
            # first (a no-op write), so no other edit commits between this read and the update.
            posts = cast(Table, Post.__table__)
            await session.execute(
                update(posts).where(posts.c.id == post.id).values(updated_at=posts.c.updated_at)
            )
        current = (
            await session.execute(
                select(*(getattr(Post, name) for name in _LOCKED_FIELDS))
                .where(Post.id == post.id)
                .with_for_update()
            )
        ).one_or_none()
        if current is None:
            raise PostNotFound()  # deleted since the lookup
        for name, value in zip(_LOCKED_FIELDS, current, strict=True):
            set_committed_value(post, name, value)
        return {name: getattr(post, name) for name in _VERSIONED_FIELDS}

    def _record_revision(self, session: AsyncSession, post: Post, previous: dict[str, Any]) -> None:
        """Store the version ``previous`` as a revision when the update changes it; an update
        that changes the title or the content also moves ``edited_at``."""
        changed = {name for name in _VERSIONED_FIELDS if getattr(post, name) != previous[name]}
        if not changed:
            return
        now = utcnow()
        session.add(PostRevision(post_id=post.id, replaced_at=now, **previous))
        post.updated_at = now
        if changed & _EDIT_FIELDS:
            post.edited_at = now

    async def revisions(
        self,
        session: AsyncSession,
        *,
        post_id: int,
        user: User | None,
        limit: int,
        cursor: str | None = None,
    ) -> RevisionPage:
        """A page of a post's previous versions, newest first.

        Whoever may see the post may list them, or only its author when
        ``revisions_visible_to`` is ``"author"``. Versions saved while the post was a draft
        are listed to its author only.

        :raises PostNotFound: no such post, one ``user`` may not see, or (``author`` setting)
            another author's post.
        :raises InvalidCursor: ``cursor`` is not one postkit issued for revisions.
        """
        post = await self.find(session, post_id=post_id, user=user)
        is_author = user is not None and post.owner_id == user.id
        if self.revisions_visible_to == "author" and not is_author:
            raise PostNotFound()
        statement = select(PostRevision).where(PostRevision.post_id == post.id)
        if not is_author:
            statement = statement.where(PostRevision.published == true())
        if cursor:
            _, after_id = decode_cursor(cursor, "revisions")
            statement = statement.where(PostRevision.id < after_id)
        statement = statement.order_by(PostRevision.id.desc()).limit(limit + 1)
        found = list((await session.execute(statement)).scalars())
        cursor_after = None
        if len(found) > limit:
            found = found[:limit]
            cursor_after = encode_cursor("revisions", found[-1].id, found[-1].id)
        return RevisionPage(
            revisions=[revision_dict(revision) for revision in found], next_cursor=cursor_after
        )

    async def delete(self, session: AsyncSession, *, post_id: int, user: User) -> None:
        """Delete a post ``user`` may modify, and commit; its votes go with it (foreign-key
        cascade).

        :raises PostNotFound: no such post, or one ``user`` may not see.
        :raises NotPostOwner: ``can_modify_post`` said no.
        """
        post = await self.find(session, post_id=post_id, user=user)
        await self._check_may_modify(post, user, "delete")
        deleted = await session.execute(delete(Post).where(Post.id == post.id))
        if not getattr(deleted, "rowcount", 1):
            # A concurrent request deleted it first.
            raise PostNotFound()
        await session.commit()
        await self.hooks.notify("after_post_delete", post=post, user=user)
