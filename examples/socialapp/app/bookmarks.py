"""Bookmarks routes: the app's own feature, protected by postkit's ``current_user``."""

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Bookmark
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
    created = bookmark.created_at
    if created.tzinfo is None:  # SQLite hands back naive timestamps; they were stored in UTC
        created = created.replace(tzinfo=timezone.utc)
    return BookmarkOut(post_id=bookmark.post_id, created_at=created)


class BookmarkNotFound(PostKitError):
    """The caller has not bookmarked this post (or the id cannot be a post's)."""

    status_code = 404
    code = "BOOKMARK_NOT_FOUND"
    message = "Not bookmarked"


def get_bookmarks_router(kit: PostKit) -> APIRouter:
    """``/bookmarks``: list, read, add (idempotent PUT) and remove the caller's bookmarks."""
    router = APIRouter(prefix="/bookmarks", tags=["bookmarks"], route_class=PostKitRoute)
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

    @router.get("/{post_id}", response_model=BookmarkOut, responses=error_responses(401, 404))
    async def get_bookmark(post_id: PostId, session: Session, user: CurrentUser) -> BookmarkOut:
        """The caller's bookmark of one post, or 404."""
        return _out(await find_bookmark(session, user, post_id))

    @router.put("/{post_id}", response_model=BookmarkOut, responses=error_responses(401, 404))
    async def put_bookmark(
        post_id: PostId, session: Session, user: CurrentUser, response: Response
    ) -> BookmarkOut:
        """Bookmark a post: 201 when new, 200 when it was already bookmarked (safe to retry)."""
        # The post as this user may see it: drafts and plugins' read filters apply (else 404).
        await kit.posts.find(session, post_id=post_id, user=user)
        existing = await session.get(Bookmark, (user.id, post_id))
        if existing is not None:
            return _out(existing)
        bookmark = Bookmark(user_id=user.id, post_id=post_id)
        session.add(bookmark)
        try:
            await session.commit()
        except IntegrityError:  # a concurrent identical PUT won the race, or the post just went
            await session.rollback()
            existing = await session.get(Bookmark, (user.id, post_id))
            if existing is None:
                raise PostNotFound() from None
            return _out(existing)
        response.status_code = status.HTTP_201_CREATED
        return _out(bookmark)

    @router.delete(
        "/{post_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401, 404),
    )
    async def delete_bookmark(post_id: PostId, session: Session, user: CurrentUser) -> Response:
        """Remove a bookmark: 204, or 404 when the post was not bookmarked."""
        await session.delete(await find_bookmark(session, user, post_id))
        await session.commit()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
