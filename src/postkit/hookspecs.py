"""The hooks a postkit plugin may implement.

Hooks are called with keyword arguments, so a plugin implements only the parameters it needs, and
a hook may gain parameters without breaking existing plugins. An implementation may be a plain
function or a coroutine function: postkit awaits whatever it returns when that is awaitable.

"First answer wins" hooks (:func:`can_modify_post`, :func:`vote_weight`, :func:`rank_score`,
:func:`can_modify_comment`, :func:`comment_vote_weight`) are resolved by postkit:
implementations run in order (plugins passed to :class:`~postkit.PostKit` first, in the order
given, then entry-point plugins; ``tryfirst`` before, ``trylast`` after) and the first one
whose awaited answer is not ``None`` decides. postkit's own
behaviour is registered as default plugins marked ``trylast``, so a host's plugin runs before it.

"after" hooks run once the write is committed; an exception in one is logged and does not undo
the write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.sql.elements import ColumnElement

    from postkit.models import Comment, Post, User

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "postkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- Posts --------------------------------------------------------------------------------------


@hookspec
def validate_post(
    data: dict[str, Any], user: User, existing: Post | None
) -> Awaitable[None] | None:
    """Check a post before it is created or updated; raise :class:`~postkit.PostRejected` to refuse.

    Runs after the request body passed validation and, on update, after the post was found and
    :func:`can_modify_post` allowed the change. ``PostRejected`` answers 422 (or the
    ``status_code`` it was given, e.g. 403) with its ``code`` and message.

    :param data: the fields being written (``title``, ``content``, ``published``); on a partial
        update only the fields the client sent. May be changed in place to normalise input.
    :param user: the user making the change.
    :param existing: the post being updated, or ``None`` on create.
    """


@hookspec
def before_post_save(post: Post, user: User) -> Awaitable[None] | None:
    """Adjust a post just before it is written, by changing ``post`` in place.

    An exception raised here rolls the whole request back (an unexpected one answers 500).

    :param post: the post about to be flushed (new or updated), inside the request's transaction.
        On create it has no ``id`` yet.
    :param user: the user making the change.
    """


@hookspec
def after_post_create(post: Post, user: User) -> Awaitable[None] | None:
    """Called after a new post is committed (notifications, indexing, audit).

    :param post: the committed post.
    :param user: its author.
    """


@hookspec
def after_post_update(post: Post, user: User, changes: dict[str, Any]) -> Awaitable[None] | None:
    """Called after an update to a post is committed.

    :param post: the post as committed.
    :param user: the user who changed it.
    :param changes: the fields that were written, with their new values.
    """


@hookspec
def after_post_delete(post: Post, user: User) -> Awaitable[None] | None:
    """Called after a post is deleted and the deletion committed.

    :param post: the deleted post (detached; its attributes still readable).
    :param user: the user who deleted it.
    """


@hookspec
def can_modify_post(post: Post, user: User, action: str) -> bool | Awaitable[bool | None] | None:
    """Decide whether ``user`` may change ``post``. First non-``None`` answer wins.

    Only posts the user can see get this far: a post hidden from them (another user's draft,
    or one filtered out by :func:`post_query_filters`) answers 404 first.

    :param post: the post to be changed (its ``owner`` loaded).
    :param user: the user asking.
    :param action: ``"update"`` or ``"delete"``.
    :returns: ``True`` to allow, ``False`` to refuse (403 ``NOT_POST_OWNER``), ``None`` to leave
        it to the next plugin. The built-in default allows the owner only.
    """


@hookspec
def post_query_filters(
    user: User | None,
) -> list[ColumnElement[bool]] | Awaitable[list[ColumnElement[bool]] | None] | None:
    """Return SQL filter expressions added to every query that reads posts (tenancy, moderation).

    They apply to the feed, to ``GET /posts/{id}``, and to the lookup before every update,
    delete and vote. Those queries join each post's owner, so the expressions may use
    :class:`~postkit.models.User` columns (the author's) as well as
    :class:`~postkit.models.Post` columns. Every plugin's filters apply (they are ANDed).

    :param user: the reader, or ``None`` for an anonymous reader (when ``public_reads`` is on).
    :returns: a list of SQLAlchemy boolean expressions, all of which must hold for a post to be
        visible; or ``None``. A post filtered out answers 404, like one that does not exist.
    """


@hookspec
def extra_post_fields(post: Post, user: User | None) -> dict[str, Any] | Awaitable[Any] | None:
    """Return fields merged into the post's ``extra`` object in responses.

    Called once per post in every response, and only when some plugin implements it (a feed
    without such a plugin never builds ORM objects).

    :param post: the post being serialised. On reads it is a detached copy built from the row:
        its columns and ``post.owner.id`` / ``post.owner.username`` are set, nothing else.
    :param user: the reader, or ``None`` when anonymous.
    :returns: a JSON-serialisable dict, or ``None``. The first plugin called to set a key keeps
        it (plugins passed to :class:`~postkit.PostKit` are called in the order given).
    """


# --- Votes --------------------------------------------------------------------------------------


@hookspec
def validate_vote(post: Post, user: User, direction: int) -> Awaitable[None] | None:
    """Check a vote before it is written; raise :class:`~postkit.VoteRejected` to refuse.

    Runs for every vote request on a post the voter can see, before postkit knows whether the
    vote already exists. ``VoteRejected`` answers 422, or its ``status_code`` (e.g. 403).
    A down-vote refused by the ``allow_downvotes`` setting never gets here.

    :param post: the post voted on.
    :param user: the voter.
    :param direction: ``1`` to up-vote, ``-1`` to down-vote, ``0`` to remove a vote.
    """


@hookspec
def vote_weight(post: Post, user: User, direction: int) -> int | Awaitable[int | None] | None:
    """Decide how much a vote counts towards the post's score. First non-``None`` answer wins.

    The answer is the vote's magnitude: postkit stores ``direction * weight``, so a down-vote
    of weight 2 takes 2 off the score. Switching a vote's direction asks again.

    :param post: the post voted on.
    :param user: the voter.
    :param direction: ``1`` for an up-vote, ``-1`` for a down-vote (removing a vote takes back
        the weight it was cast with, without asking).
    :returns: an integer weight (the built-in default is ``1``; zero and negative weights are
        allowed), or ``None`` to defer. Anything else is a plugin error (500).
    """


@hookspec
def after_vote(post: Post, user: User, direction: int, previous: int) -> Awaitable[None] | None:
    """Called after a vote, a switch of its direction, or its removal is committed.

    Not called when a request changed nothing (``PUT`` on a vote that already was as asked,
    ``DELETE`` with none).

    :param post: the post voted on, with its updated ``vote_count`` (the score), ``upvotes``,
        ``downvotes`` and ranks.
    :param user: the voter.
    :param direction: ``1`` or ``-1`` for the vote now standing, ``0`` for a removal.
    :param previous: the voter's direction before this call (``1``, ``-1`` or ``0``).
    """


@hookspec
def rank_score(
    rank: str,
    item: Post,
    score: int,
    upvotes: int,
    downvotes: int,
    created_at: datetime,
) -> float | Awaitable[float | None] | None:
    """Compute one stored ranking score of a post. First non-``None`` answer wins, per rank.

    Called once per rank (``"hot"``, ``"best"``, ``"controversial"``) whenever a post's votes
    change and, for every rank, when it is created, inside that write's transaction; the answer
    is stored in the post's ``<rank>_rank`` column, which ``GET /posts?sort=<rank>`` orders by.
    The built-in default is :mod:`postkit.ranking` (``hot``, ``best``, ``controversial``).
    Answer ``None`` for the ranks you leave to it. Keep it a pure function of its arguments:
    the stored value is not recomputed as time passes, and the migration that introduced the
    ranks computed them with the defaults.

    :param rank: which score: ``"hot"``, ``"best"`` or ``"controversial"``.
    :param item: the post (on create it has no ``id`` yet).
    :param score: the post's score (the sum of its votes' signed weights) after the change.
    :param upvotes: its number of up-votes after the change.
    :param downvotes: its number of down-votes after the change.
    :param created_at: when the post was created (timezone-aware, never changes).
    :returns: a finite ``float`` (or ``int``), or ``None`` to defer. Anything else is a plugin
        error (500).
    """


# --- Comments -----------------------------------------------------------------------------------


@hookspec
def validate_comment(
    data: dict[str, Any], user: User, post: Post, parent: Comment | None, existing: Comment | None
) -> Awaitable[None] | None:
    """Check a comment before it is created or edited; raise :class:`~postkit.CommentRejected`
    to refuse.

    Runs after the request body passed validation, once the post (and the parent) were found
    and, on an edit, after :func:`can_modify_comment` allowed it. ``CommentRejected`` answers
    422 (or the ``status_code`` it was given, e.g. 403) with its ``code`` and message.

    :param data: the fields being written (``body``, and ``parent_id`` on create). May be
        changed in place to normalise the body.
    :param user: the user writing.
    :param post: the post the comment is on.
    :param parent: the comment replied to, or ``None`` for a top-level comment.
    :param existing: the comment being edited, or ``None`` on create.
    """


@hookspec
def before_comment_save(comment: Comment, user: User) -> Awaitable[None] | None:
    """Adjust a comment just before it is written, by changing ``comment`` in place (its
    ``body``).

    An exception raised here rolls the whole request back (an unexpected one answers 500).

    :param comment: the comment about to be written (new or edited). On create it has no
        ``id`` yet.
    :param user: the user writing.
    """


@hookspec
def after_comment_create(comment: Comment, user: User) -> Awaitable[None] | None:
    """Called after a new comment (or reply) is committed (notifications, indexing, audit).

    :param comment: the committed comment.
    :param user: its author.
    """


@hookspec
def after_comment_update(
    comment: Comment, user: User, changes: dict[str, Any]
) -> Awaitable[None] | None:
    """Called after an edit of a comment is committed (its previous body is in its revisions).

    :param comment: the comment as committed.
    :param user: the user who edited it.
    :param changes: the fields that were written, with their new values.
    """


@hookspec
def after_comment_delete(comment: Comment, user: User) -> Awaitable[None] | None:
    """Called after a comment is deleted and the deletion committed.

    :param comment: the comment as it was before the deletion (detached). Its ``reply_count``
        says which way it went: with replies it stays in the thread as a placeholder, without
        it is removed.
    :param user: the user who deleted it.
    """


@hookspec
def can_modify_comment(
    comment: Comment, user: User, action: str
) -> bool | Awaitable[bool | None] | None:
    """Decide whether ``user`` may change ``comment``. First non-``None`` answer wins.

    Only comments the user can see get this far: a comment hidden from them (its post hidden,
    or filtered out by :func:`comment_query_filters`) answers 404 first.

    :param comment: the comment to be changed.
    :param user: the user asking.
    :param action: ``"update"`` or ``"delete"``.
    :returns: ``True`` to allow, ``False`` to refuse (403 ``NOT_COMMENT_AUTHOR``), ``None`` to
        leave it to the next plugin. The built-in default allows the author only.
    """


@hookspec
def comment_query_filters(
    user: User | None,
) -> list[ColumnElement[bool]] | Awaitable[list[ColumnElement[bool]] | None] | None:
    """Return SQL filter expressions added to every query that reads comments (moderation).

    They apply to comment pages, their nested replies, ``GET /comments/{id}``, and the lookup
    before every edit, deletion, reply and vote; the post's own visibility
    (:func:`post_query_filters`) applies first. The expressions may use
    :class:`~postkit.models.Comment` columns. Every plugin's filters apply (they are ANDed);
    the replies of a hidden comment are not shown nested under it either.

    :param user: the reader, or ``None`` for an anonymous reader (when ``public_reads`` is on).
    :returns: a list of SQLAlchemy boolean expressions, all of which must hold for a comment to
        be visible; or ``None``. A comment filtered out answers 404, like one that does not
        exist.
    """


@hookspec
def validate_comment_vote(comment: Comment, user: User, direction: int) -> Awaitable[None] | None:
    """Check a vote on a comment before it is written; raise :class:`~postkit.VoteRejected`
    to refuse.

    Runs for every vote request on a comment the voter can see, before postkit knows whether
    the vote already exists. ``VoteRejected`` answers 422, or its ``status_code`` (e.g. 403).

    :param comment: the comment voted on.
    :param user: the voter.
    :param direction: ``1`` up, ``-1`` down, ``0`` to remove a vote.
    """


@hookspec
def comment_vote_weight(
    comment: Comment, user: User, direction: int
) -> int | Awaitable[int | None] | None:
    """Decide how much a vote on a comment counts. First non-``None`` answer wins.

    :param comment: the comment voted on.
    :param user: the voter.
    :param direction: ``1`` up or ``-1`` down (removing a vote takes back what it was cast
        with).
    :returns: a positive integer, the vote's size: the comment's ``score`` moves by it, up or
        down with ``direction`` (the built-in default is ``1``); or ``None`` to defer.
        Anything else is a plugin error (500). ``upvotes`` and ``downvotes`` count voters,
        whatever their weight.
    """


@hookspec
def after_comment_vote(
    comment: Comment, user: User, direction: int, previous: int
) -> Awaitable[None] | None:
    """Called after a vote on a comment, a change of it, or its removal is committed.

    Not called when a request changed nothing (the same vote again, a removal with none).

    :param comment: the comment voted on, with its updated ``score``, ``upvotes`` and
        ``downvotes``.
    :param user: the voter.
    :param direction: ``1``, ``-1``, or ``0`` for a removal.
    :param previous: the voter's direction before this call (``1``, ``-1`` or ``0``).
    """


# --- Accounts -----------------------------------------------------------------------------------


@hookspec
def validate_registration(
    email: str, username: str, data: dict[str, Any]
) -> Awaitable[None] | None:
    """Check a registration before the account is created; raise
    :class:`~postkit.errors.PostKitError` (e.g. with ``status_code=403``) to refuse.

    :param email: the normalised email address.
    :param username: the chosen or generated username.
    :param data: the whole request body, password excluded.
    """


@hookspec
def after_user_register(user: User) -> Awaitable[None] | None:
    """Called after a new account is committed (welcome mail, profile rows, analytics).

    :param user: the new user.
    """


@hookspec
def after_login(user: User) -> Awaitable[None] | None:
    """Called after a successful password login has been committed.

    :param user: the user who logged in.
    """


@hookspec
def render_email(
    kind: str, user: User, link: str | None, to: str
) -> tuple[str, str] | Awaitable[tuple[str, str] | None] | None:
    """Compose a mail postkit sends: return ``(subject, text body)``. First non-``None`` answer
    wins; the built-in default writes short plain-text messages.

    Runs on the kit's background mail sender, after the request's writes are committed, never
    on the request's own path: an exception here is logged and that mail is not sent.

    :param kind: what the mail is for: ``"password_reset"`` (``link`` resets the password),
        ``"verify_email"`` (``link`` verifies the address, sent at registration and on request),
        ``"confirm_email_change"`` (sent to the new address; ``link`` makes the change) or
        ``"email_change_notice"`` (sent to the old address when a change is asked for; no link).
    :param user: the account the mail is about.
    :param link: the link to put in the body (built from ``public_base_url`` and the
        ``*_url_path`` settings), or ``None``.
    :param to: the address the mail goes to (for a change, not ``user.email``).
    :returns: ``(subject, body)``, or ``None`` to leave it to the next plugin.
    """


@hookspec
def after_password_reset(user: User) -> Awaitable[None] | None:
    """Called after a password was reset with a mailed link and the change committed (every
    session of the account has ended by then).

    :param user: the account whose password was reset.
    """


@hookspec
def before_account_delete(user: User, session: AsyncSession) -> Awaitable[None] | None:
    """Called when an account is about to be deleted, after its password was checked; raise
    :class:`~postkit.errors.PostKitError` to refuse (e.g. ``status_code=409`` with a code of
    your own while the account owns something that must be handed over first).

    Runs inside the deletion's transaction, with the account's row locked: rows of your own
    that point at the account may be deleted through ``session`` (do not commit), and they go
    or stay with the account.

    :param user: the account being deleted.
    :param session: the transaction the deletion runs in.
    """


@hookspec
def after_account_delete(user_id: int, email: str, username: str) -> Awaitable[None] | None:
    """Called after an account's deletion is committed (a goodbye mail, an audit line, purging
    caches or search indexes). The account no longer exists.

    :param user_id: the deleted account's id (never given to another account).
    :param email: its email address.
    :param username: its username.
    """
