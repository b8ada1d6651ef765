"""postkit's tables, in SQLAlchemy 2.0 declarative style.

Every table is prefixed ``postkit_`` and every constraint is named by the naming convention on
:data:`metadata`, so migrations can refer to constraints by name on every database.
A host's own models may hold foreign keys to ``postkit_users.id`` (``ForeignKey(User.id)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    func,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.orm.attributes import instance_dict
from sqlalchemy.types import TypeDecorator

USER_AGENT_MAX_LENGTH = 255
"""The longest ``User-Agent`` stored with an auth session; longer ones are cut."""

MAX_ID = 2**31 - 1
"""The largest id an integer primary key holds (32-bit on PostgreSQL): a larger one cannot
exist, so routes answer it 404 without a query."""

__all__ = [
    "MAX_ID",
    "USER_AGENT_MAX_LENGTH",
    "AccountToken",
    "AuthSession",
    "Base",
    "Comment",
    "CommentRevision",
    "CommentVote",
    "LoginAttempt",
    "Post",
    "PostRevision",
    "RateLimitCounter",
    "RefreshToken",
    "User",
    "Vote",
    "detached",
    "metadata",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


_Model = TypeVar("_Model", bound="Base")


def detached(model: type[_Model], values: Iterable[tuple[str, Any]]) -> _Model:
    """An instance of ``model`` outside any session, as if loaded and then detached: ``values``
    (attribute name, value) are its committed state, with nothing pending to flush and no
    events fired (what ``set_committed_value`` does one attribute at a time)."""
    instance: _Model = model.__mapper__.class_manager.new_instance()
    instance_dict(instance).update(values)
    return instance


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("postkit stores aware datetimes only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is timezone.utc:
            return value  # asyncpg answers timestamptz in UTC already
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class _Redacted(str):
    """A string that prints as ``'<redacted>'``: how password hashes come out of the database."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


class RedactedString(TypeDecorator[str]):
    """A string column whose values never show in SQLAlchemy's debug log of result rows.

    (Statement parameters are kept out of logs by the engine's ``hide_parameters``.)
    """

    impl = String
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _Redacted(value)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class User(Base):
    """An account. ``email`` is private to its owner; ``username`` is the public name."""

    __tablename__ = "postkit_users"
    # AUTOINCREMENT on SQLite: without it SQLite hands the highest freed id to the next account,
    # so rows (and tokens) that name a deleted account's id would point at a stranger.
    # PostgreSQL's sequence never reuses an id.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored normalised to lower case, so the unique constraint compares case-insensitively.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # Stored lower case too: usernames are unique case-insensitively and log in either way.
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(RedactedString(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Bumped by "log out everywhere" and password changes: access tokens carry the value they
    # were issued under, and stop verifying once it moves on.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    # Set when the owner followed a verification link mailed to ``email`` (or confirmed a
    # change to it); None until then.
    email_verified_at: Mapped[datetime | None] = mapped_column(default=None)

    posts: Mapped[list[Post]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<User id={self.id} username={self.username!r}>"


class Post(Base):
    """A post. ``vote_count`` is its score, the running total of its votes' signed weights, and
    ``upvotes``/``downvotes`` count its votes of each direction; the vote service keeps them, and
    the ``*_rank`` columns computed from them (:mod:`postkit.ranking`), in the same transaction
    as each vote, so a feed page never aggregates the votes table."""

    __tablename__ = "postkit_posts"
    __table_args__ = (
        Index("ix_postkit_posts_created_at_id", "created_at", "id"),
        Index("ix_postkit_posts_vote_count_id", "vote_count", "id"),
        Index("ix_postkit_posts_hot_rank_id", "hot_rank", "id"),
        Index("ix_postkit_posts_best_rank_id", "best_rank", "id"),
        Index("ix_postkit_posts_controversial_rank_id", "controversial_rank", "id"),
        CheckConstraint("length(title) >= 1", name="title_not_empty"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    # Set by an update that changes the title or the content; None until then.
    edited_at: Mapped[datetime | None] = mapped_column(default=None)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("postkit_users.id", ondelete="CASCADE"), index=True
    )
    # The score (the API's ``score``): the sum of the votes' signed weights.
    vote_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The post's comments that are not deleted, kept by the comment service in the same
    # transaction as each comment written or deleted.
    comment_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    upvotes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    downvotes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    hot_rank: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    best_rank: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    controversial_rank: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")

    owner: Mapped[User] = relationship(back_populates="posts", lazy="raise")

    def __repr__(self) -> str:
        return f"<Post id={self.id} owner_id={self.owner_id}>"


class PostRevision(Base):
    """A previous version of a post: what its title, content and published flag were until the
    update at ``replaced_at``. Written in the update's own transaction."""

    __tablename__ = "postkit_post_revisions"
    __table_args__ = (Index("ix_postkit_post_revisions_post_id_id", "post_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("postkit_posts.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(Boolean)
    replaced_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class Vote(Base):
    """One user's vote on one post. The primary key makes a second vote impossible.

    ``direction`` is 1 (up) or -1 (down); ``weight`` is signed: the direction times what
    ``vote_weight`` answered, so the post's score is the sum of the weights."""

    __tablename__ = "postkit_votes"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("postkit_users.id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[int] = mapped_column(
        ForeignKey("postkit_posts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    direction: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class AuthSession(Base):
    """A login: the family of refresh tokens issued from one password check.

    Access tokens name their session (``sid``), so revoking it ends them too.
    """

    __tablename__ = "postkit_auth_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("postkit_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # The login's User-Agent header, cut to USER_AGENT_MAX_LENGTH characters.
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH), default=None)
    # Set at login and at every refresh; not on each access-token use (reads stay write-free).
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class RefreshToken(Base):
    """A refresh token, stored only as its SHA-256 digest. ``used_at`` is set when it is rotated;
    presenting a used token again revokes its whole session."""

    __tablename__ = "postkit_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("postkit_auth_sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class LoginAttempt(Base):
    """A failed (or in-flight) login, counted by the throttle. ``key`` is a SHA-256 digest of the
    account identifier or client address, so no typed-in email is stored in clear."""

    __tablename__ = "postkit_login_attempts"
    __table_args__ = (Index("ix_postkit_login_attempts_key_attempted_at", "key", "attempted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class RateLimitCounter(Base):
    """One rate limit counter: the hits of ``key`` in the window starting at ``window_start``.

    ``key`` is the policy name and a SHA-256 digest of what it counts against (an address, an
    account), so no address is stored in clear. Times are epoch seconds. Rows whose window is
    over (``expires_at`` past) are dead and pruned by later hits (:mod:`postkit.ratelimit`).
    """

    __tablename__ = "postkit_rate_limits"
    __table_args__ = (Index("ix_postkit_rate_limits_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    hits: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(BigInteger)


class AccountToken(Base):
    """A token mailed to an account's owner: a password reset, an email verification, or the
    confirmation of a new address (``purpose``). Stored only as its SHA-256 digest.

    ``fingerprint`` digests the account state the token was issued for (its email, and for a
    reset or a change its password hash): once that changes the token stops working. ``email``
    is the address the token proves (the new one, for a change); ``used_at`` spends it.
    """

    __tablename__ = "postkit_account_tokens"
    __table_args__ = (Index("ix_postkit_account_tokens_purpose_email", "purpose", "email"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("postkit_users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(320))
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


COMMENT_SORT_KEYS = ("created_at", "score", "best_rank")
"""The columns comment pages are sorted by (``new``, ``top``, ``best``), each indexed."""


class Comment(Base):
    """A comment on a post, or a reply to another comment of the same post (``parent_id``).

    ``depth`` is 1 for a top-level comment and one more than its parent's for a reply.
    ``reply_count`` is the number of direct replies stored (deleted ones with replies of their
    own included); ``score``, ``upvotes``, ``downvotes`` and the ``*_rank`` columns are moved by
    the comment vote service in each vote's transaction. A deleted comment that has replies
    stays as a placeholder: ``deleted_at`` set, ``body`` and ``author_id`` cleared. A comment
    whose author's account is gone keeps its body with ``author_id`` null.

    Every listing is a keyset walk of one index per sort: a post's top-level comments walk a
    partial index ``(post_id, <sort key>, id) WHERE parent_id IS NULL`` (PostgreSQL cannot
    take its order from an index after an ``IS NULL`` condition), a comment's replies walk
    ``(parent_id, <sort key>, id)``.
    """

    __tablename__ = "postkit_comments"
    __table_args__ = tuple(
        Index(
            f"ix_postkit_comments_top_{key}",
            "post_id",
            key,
            "id",
            postgresql_where=text("parent_id IS NULL"),
            sqlite_where=text("parent_id IS NULL"),
        )
        for key in COMMENT_SORT_KEYS
    ) + tuple(
        Index(f"ix_postkit_comments_replies_{key}", "parent_id", key, "id")
        for key in COMMENT_SORT_KEYS
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Indexed for the foreign key's cascade (a post's deletion removes its threads); the
    # replies indexes serve the parent's.
    post_id: Mapped[int] = mapped_column(
        ForeignKey("postkit_posts.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("postkit_comments.id", ondelete="CASCADE"), default=None
    )
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("postkit_users.id", ondelete="SET NULL"), index=True, default=None
    )
    body: Mapped[str | None] = mapped_column(Text, default=None)
    depth: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    edited_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    score: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    upvotes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    downvotes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reply_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    hot_rank: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    best_rank: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    controversial_rank: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")

    def __repr__(self) -> str:
        return f"<Comment id={self.id} post_id={self.post_id} parent_id={self.parent_id}>"


class CommentVote(Base):
    """One user's vote on one comment: ``weight`` is positive for an up-vote, negative for a
    down-vote. The primary key makes a second vote impossible."""

    __tablename__ = "postkit_comment_votes"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("postkit_users.id", ondelete="CASCADE"), primary_key=True
    )
    comment_id: Mapped[int] = mapped_column(
        ForeignKey("postkit_comments.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class CommentRevision(Base):
    """A comment's body as it was before an edit: ``created_at`` is when that edit replaced it,
    ``editor_id`` who made the edit (null once their account is gone)."""

    __tablename__ = "postkit_comment_revisions"
    __table_args__ = (Index("ix_postkit_comment_revisions_comment_id_id", "comment_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comment_id: Mapped[int] = mapped_column(ForeignKey("postkit_comments.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    editor_id: Mapped[int | None] = mapped_column(
        ForeignKey("postkit_users.id", ondelete="SET NULL"), index=True, default=None
    )
