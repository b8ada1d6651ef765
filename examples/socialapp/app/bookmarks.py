"""Bookmarks routes: the app's own feature, protected by postkit's ``current_user``.

``PUT /bookmarks/{post_id}`` is safe to repeat and to race: the row is written with
``INSERT ... ON CONFLICT DO NOTHING``, so of any number of identical concurrent PUTs exactly one
creates the bookmark (201) and the others find it (200); none fails on the primary key.
"""

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Bookmark, utcnow
from postkit import PostKit, PostKitError, User
from postkit.errors import PostNotFound, error_responses
from postkit.models import MAX_ID
from postkit.routing import PostKitRoute

# No `from __future__ import annotations` here: FastAPI resolves the Annotated aliases below.


class BookmarkOut(BaseModel):
    """A bookmark as the API returns it."""

    post_id: int
    created_at: datetime


def _out(bookmark: Bookmark) -> BookmarkOut:
    return _bookmark_out(bookmark.post_id, bookmark.created_at)


def _bookmark_out(post_id: int, created: datetime) -> BookmarkOut:
    if created.tzinfo is None:  # SQLite hands back naive timestamps; they were stored in UTC
        created = created.replace(tzinfo=timezone.utc)
    return BookmarkOut(post_id=post_id, created_at=created)


def _operation_id(route: APIRoute) -> str:
    # Operations are named like the functions (``put_bookmark``), as postkit's are.
    return route.name


class BookmarkNotFound(PostKitError):
    """The caller has not bookmarked this post (or the id cannot be a post's)."""

    status_code = 404
    code = "BOOKMARK_NOT_FOUND"
    message = "Not bookmarked"


def get_bookmarks_router(kit: PostKit) -> APIRouter:
    """``/bookmarks``: list, read, add (idempotent PUT) and remove the caller's bookmarks."""
    router = APIRouter(
        prefix="/bookmarks",
        tags=["bookmarks"],
        route_class=PostKitRoute,
        generate_unique_id_function=_operation_id,
    )
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    PostId = Annotated[int, Path(description="The bookmarked post's id.")]

    async def find_bookmark(session: AsyncSession, user: User, post_id: int) -> Bookmark:
        # An id out of the integer column's range cannot be bookmarked: 404, without a query.
        bookmark = (
            await session.get(Bookmark, (user.id, post_id)) if 1 <= post_id <= MAX_ID else None
        )
        if bookmark is None:
            raise BookmarkNotFound()
        return bookmark

    @router.get("", response_model=list[BookmarkOut], responses=error_responses(401))
    async def list_bookmarks(session: Session, user: CurrentUser) -> list[BookmarkOut]:
        """The caller's bookmarks, newest first."""
        rows = await session.scalars(
            select(Bookmark)
            .where(Bookmark.user_id == user.id)
            .order_by(Bookmark.created_at.desc(), Bookmark.post_id.desc())
        )
        return [_out(bookmark) for bookmark in rows]

    @router.get("/{post_id}", response_model=BookmarkOut, responses=error_responses(401, 404, 422))
    async def get_bookmark(post_id: PostId, session: Session, user: CurrentUser) -> BookmarkOut:
        """The caller's bookmark of one post, or 404."""
        return _out(await find_bookmark(session, user, post_id))

    @router.put(
        "/{post_id}",
        response_model=BookmarkOut,
        responses={
            200: {"description": "The post was already bookmarked; nothing changed"},
            201: {"model": BookmarkOut, "description": "The bookmark was created"},
            **error_responses(401, 404, 422),
        },
    )
    async def put_bookmark(
        post_id: PostId, session: Session, user: CurrentUser, response: Response
    ) -> BookmarkOut:
        """Bookmark a post: 201 when new, 200 when it was already bookmarked (safe to retry)."""
        # The post as this user may see it: drafts and plugins' read filters apply (else 404).
        await kit.posts.find(session, post_id=post_id, user=user)
        user_id = user.id  # read now: a rollback below expires every loaded object
        key = (Bookmark.user_id == user_id) & (Bookmark.post_id == post_id)
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(Bookmark)
            .values(user_id=user_id, post_id=post_id, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=[Bookmark.user_id, Bookmark.post_id])
            .returning(Bookmark.created_at)
        )
        for _attempt in range(3):
            try:
                created_at = (await session.execute(statement)).scalar_one_or_none()
                await session.commit()
            except IntegrityError:  # the post was deleted since it was found: nothing to keep
                await session.rollback()
                raise PostNotFound() from None
            if created_at is not None:
                response.status_code = status.HTTP_201_CREATED
                return _bookmark_out(post_id, created_at)
            # Another request (this client's retry, or a concurrent twin) created it first.
            existing = await session.scalar(select(Bookmark.created_at).where(key))
            if existing is not None:
                return _bookmark_out(post_id, existing)
            # ... and a concurrent DELETE removed it again since: insert anew.
        raise PostNotFound()

    @router.delete(
        "/{post_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401, 404, 422),
    )
    async def delete_bookmark(post_id: PostId, session: Session, user: CurrentUser) -> Response:
        """Remove a bookmark: 204, or 404 when the post was not bookmarked."""
        await session.delete(await find_bookmark(session, user, post_id))
        await session.commit()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
