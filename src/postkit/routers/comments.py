"""Comments: ``GET/POST /posts/{id}/comments``, ``GET/PATCH/DELETE /comments/{id}``,
``PUT/DELETE /comments/{id}/vote`` and ``GET /comments/{id}/revisions``.

Handlers are thin: parse, depend, call :class:`postkit.services.comments.Comments`, answer.
Comment responses are plain dicts serialised straight to JSON (the response models document
them).
"""

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import Dependencies
from postkit.errors import error_responses
from postkit.models import MAX_ID, User
from postkit.routers.common import ItemId, json_response, paging_headers
from postkit.schemas.comments import (
    CommentCreate,
    CommentPatch,
    CommentPublic,
    CommentRevisionPublic,
    CommentVoteIn,
    CommentVoteState,
)
from postkit.services.comments import Comments, CommentSort, CommentVoteOutcome
from postkit.services.sessions import ReadAccess
from postkit.settings import PostKitSettings

__all__ = ["TREE_MAX_DEPTH", "TREE_MAX_REPLIES_PER_COMMENT", "get_comments_router"]

TREE_MAX_DEPTH = 5
"""The most reply levels a comment page nests (the `depth` query parameter's bound)."""

TREE_MAX_REPLIES_PER_COMMENT = 20
"""The most replies nested under one comment (the `replies` query parameter's bound)."""

_PAGING_HEADERS = {
    "Link": {
        "description": 'The next page: `<url>; rel="next"`. Absent on the last page.',
        "schema": {"type": "string"},
    },
    "X-Next-Cursor": {
        "description": "The `cursor` of the next page. Absent on the last page.",
        "schema": {"type": "string"},
    },
}


def _check_body_length(body: str, limit: int) -> None:
    if len(body) > limit:
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ("body", "body"),
                    "msg": f"String should have at most {limit} characters",
                    "ctx": {"max_length": limit},
                }
            ]
        )


def _paged(request: Request, items: object, next_cursor: str | None) -> Response:
    return json_response(items, headers=paging_headers(request, next_cursor))


def _vote_state(outcome: CommentVoteOutcome) -> dict[str, int]:
    return {
        "comment_id": outcome.comment_id,
        "dir": outcome.direction,
        "score": outcome.score,
        "upvotes": outcome.upvotes,
        "downvotes": outcome.downvotes,
    }


def get_comments_router(
    comments: Comments, deps: Dependencies, settings: PostKitSettings
) -> APIRouter:
    """The comment routes on ``comments``. Reads need a token unless ``public_reads`` is set."""
    router = deps.router(tags=["comments"])
    Session = Annotated[AsyncSession, deps.session_param]
    CurrentUser = Annotated[User, deps.writer_param]
    # The page and the single comment take the fast path: the token check rides on the read.
    Reader = Annotated[ReadAccess, deps.read_access_param]
    # The revisions stay on the session path.
    SessionReader = Annotated[User | None, deps.reader_param]
    body_limit = settings.comment_content_max_length
    Limit = Annotated[int, Query(ge=1, le=settings.posts_max_limit, description="Items per page.")]
    Cursor = Annotated[
        str | None, Query(max_length=512, description="From a previous page's `X-Next-Cursor`.")
    ]
    vote_limit = deps.rate_limit("vote")
    vote_limited = deps.rate_limit_responses("vote")

    @router.get(
        "/posts/{post_id}/comments",
        name="postkit:list_comments",
        response_model=list[CommentPublic],
        responses={200: {"headers": _PAGING_HEADERS}, **error_responses(400, 401, 404, 422)},
    )
    async def list_comments(
        request: Request,
        post_id: ItemId,
        reader: Reader,
        sort: Annotated[
            CommentSort,
            Query(
                description=(
                    "`best`: the lower bound of the Wilson score of up- and down-votes; "
                    "`top`: highest score; `new`: newest first."
                )
            ),
        ] = "best",
        limit: Limit = settings.posts_default_limit,
        cursor: Cursor = None,
        parent_id: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_ID,
                description="A flat page of this comment's direct replies (no nesting).",
            ),
        ] = None,
        depth: Annotated[
            int,
            Query(
                ge=0,
                le=TREE_MAX_DEPTH,
                description="Reply levels nested under each top-level comment (0: none).",
            ),
        ] = 2,
        replies: Annotated[
            int,
            Query(
                ge=0,
                le=TREE_MAX_REPLIES_PER_COMMENT,
                description="Replies nested under each comment, at most; `reply_count` has all.",
            ),
        ] = 3,
    ) -> Response:
        """A page of a post's comments: top-level ones with their best replies nested, or with
        `parent_id` a flat page of one comment's direct replies.

        The next page's URL is in the `Link` header (`rel="next"`), its cursor in
        `X-Next-Cursor`. A post the caller may not see answers 404.
        """
        page = await comments.page_for(
            reader,
            post_id=post_id,
            sort=sort,
            limit=limit,
            cursor=cursor,
            parent_id=parent_id,
            depth=depth,
            replies=replies,
        )
        return _paged(request, page.comments, page.next_cursor)

    @router.post(
        "/posts/{post_id}/comments",
        name="postkit:create_comment",
        status_code=status.HTTP_201_CREATED,
        response_model=CommentPublic,
        responses={
            **error_responses(401, 403, 404, 409, 413, 422),
            **deps.rate_limit_responses("comment_create"),
        },
        dependencies=[deps.rate_limit("comment_create")],
    )
    async def create_comment(
        post_id: ItemId, body: CommentCreate, session: Session, user: CurrentUser
    ) -> Response:
        """Comment on a post, or reply to one of its comments (`parent_id`).

        422 `INVALID_PARENT` when `parent_id` is no comment of this post, 409
        `PARENT_DELETED` when it was deleted, 422 `COMMENT_TOO_DEEP` past the
        `comment_max_depth` setting.
        """
        _check_body_length(body.body, body_limit)
        created = await comments.create(session, post_id=post_id, data=body.model_dump(), user=user)
        return json_response(created, status_code=201)

    @router.get(
        "/comments/{comment_id}",
        name="postkit:get_comment",
        response_model=CommentPublic,
        responses=error_responses(401, 404, 422),
    )
    async def get_comment(comment_id: ItemId, reader: Reader) -> Response:
        """One comment (a deleted one that still has replies answers as its placeholder)."""
        return json_response(await comments.get_for(reader, comment_id=comment_id))

    @router.patch(
        "/comments/{comment_id}",
        name="postkit:update_comment",
        response_model=CommentPublic,
        responses=error_responses(401, 403, 404, 413, 422),
    )
    async def update_comment(
        comment_id: ItemId, body: CommentPatch, session: Session, user: CurrentUser
    ) -> Response:
        """Edit a comment's body (its author only); the previous body goes to its revisions."""
        _check_body_length(body.body, body_limit)
        updated = await comments.update(
            session, comment_id=comment_id, data=body.model_dump(), user=user
        )
        return json_response(updated)

    @router.delete(
        "/comments/{comment_id}",
        name="postkit:delete_comment",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses=error_responses(401, 403, 404, 422),
    )
    async def delete_comment(comment_id: ItemId, session: Session, user: CurrentUser) -> Response:
        """Delete a comment (its author only). One with replies stays in the thread as a
        placeholder (`deleted: true`, no body, no author); one without is removed."""
        await comments.delete(session, comment_id=comment_id, user=user)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get(
        "/comments/{comment_id}/revisions",
        name="postkit:list_comment_revisions",
        response_model=list[CommentRevisionPublic],
        responses={200: {"headers": _PAGING_HEADERS}, **error_responses(400, 401, 404, 422)},
    )
    async def list_comment_revisions(
        request: Request,
        comment_id: ItemId,
        session: Session,
        reader: SessionReader,
        limit: Limit = settings.posts_default_limit,
        cursor: Cursor = None,
    ) -> Response:
        """A comment's previous bodies, newest first. With the `revisions_visible_to` setting
        at `author`, only its author sees them (404 for everyone else)."""
        page = await comments.revisions(
            session, comment_id=comment_id, user=reader, limit=limit, cursor=cursor
        )
        return _paged(request, page.revisions, page.next_cursor)

    @router.put(
        "/comments/{comment_id}/vote",
        name="postkit:put_comment_vote",
        response_model=CommentVoteState,
        responses={
            200: {"description": "The vote already was as asked; nothing changed"},
            201: {"model": CommentVoteState, "description": "The vote was cast or changed"},
            **error_responses(401, 403, 404, 413, 422),
            **vote_limited,
        },
        dependencies=[vote_limit],
    )
    async def put_comment_vote(
        comment_id: ItemId,
        session: Session,
        user: CurrentUser,
        response: Response,
        # Optional (no body is an up-vote) but never null: a nullable optional body makes
        # generated clients send their "unset" marker.
        body: Annotated[CommentVoteIn, Body()] = CommentVoteIn(),
    ) -> dict[str, int]:
        """Vote a comment up (no body, or `{"dir": 1}`) or down (`{"dir": -1}`); safe to retry
        (201 when the vote is new or changed, 200 when it already was so)."""
        direction = body.dir
        outcome = await comments.vote(
            session, comment_id=comment_id, user=user, direction=direction
        )
        response.status_code = status.HTTP_201_CREATED if outcome.changed else status.HTTP_200_OK
        return _vote_state(outcome)

    @router.delete(
        "/comments/{comment_id}/vote",
        name="postkit:delete_comment_vote",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses={**error_responses(401, 403, 404, 422), **vote_limited},
        dependencies=[vote_limit],
    )
    async def delete_comment_vote(
        comment_id: ItemId, session: Session, user: CurrentUser
    ) -> Response:
        """Remove your vote from a comment; safe to retry (204 whether or not there was one)."""
        await comments.vote(session, comment_id=comment_id, user=user, direction=0)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
