"""Posts: ``GET/POST /posts``, ``GET/PUT/PATCH/DELETE /posts/{id}``,
``GET /posts/{id}/revisions``.

Handlers are thin: parse, depend, call :class:`postkit.services.posts.Posts`, answer. Post
responses are built as plain dicts and serialised straight to JSON (the response models document
them).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import Dependencies
from postkit.errors import error_responses
from postkit.models import MAX_ID, User
from postkit.routers.common import ItemId, json_response, paging_headers
from postkit.schemas.posts import (
    PostCreate,
    PostPatch,
    PostPublic,
    PostReplace,
    PostRevisionPublic,
    storable_text,
)
from postkit.services.posts import Posts, Sort, TopWindow
from postkit.services.sessions import ReadAccess
from postkit.settings import PostKitSettings

__all__ = ["get_posts_router"]

SEARCH_MAX_LENGTH = 200

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


def _check_content_length(content: str | None, limit: int) -> None:
    if content is not None and len(content) > limit:
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ("body", "content"),
                    "msg": f"String should have at most {limit} characters",
                    "ctx": {"max_length": limit},
                }
            ]
        )


def _check_search(search: str | None) -> str | None:
    if search is None:
        return None
    try:
        return storable_text(search)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "search"), "msg": str(exc)}]
        ) from None


def _without_body_id(post_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` without the ``id`` a tutorial-API client may send; it must be the path's."""
    body_id = changes.pop("id", None)
    if body_id is not None and body_id != post_id:
        raise RequestValidationError(
            [
                {
                    "type": "id_mismatch",
                    "loc": ("body", "id"),
                    "msg": (
                        f"The id in the body ({body_id}) is not the post's id in the path "
                        f"({post_id}); send the same id or leave it out"
                    ),
                    "input": body_id,
                }
            ]
        )
    return changes


SORT_DESCRIPTION = (
    "`new`: newest first; `top`: highest score first (within the window `t`); `hot`: score "
    "decayed by age (newer posts need fewer votes); `best`: the lower bound of the Wilson score "
    "interval of the up-vote share (many votes trusted more than few); `controversial`: many "
    "votes split evenly between up and down. Ties are broken by id, highest first."
)


def _check_window(sort: Sort, window: TopWindow | None) -> TopWindow:
    if window is None:
        return "all"
    if sort != "top":
        raise RequestValidationError(
            [
                {
                    "type": "window_without_top",
                    "loc": ("query", "t"),
                    "msg": f"t (a time window) applies to sort=top only, not sort={sort}",
                    "input": window,
                }
            ]
        )
    return window


def _next_page_headers(request: Request, cursor: str | None) -> dict[str, str] | None:
    # A cursor page starts after its cursor: an offset given with the first page goes too.
    return paging_headers(request, cursor, replaces=("cursor", "skip"))


def _is_search(request: Request) -> bool:
    # Only searches are rate limited on GET /posts: plain pages are cheap index reads.
    return bool(request.query_params.get("search", "").strip())


def get_posts_router(posts: Posts, deps: Dependencies, settings: PostKitSettings) -> APIRouter:
    """The posts routes on ``posts``. Reads need a token unless ``public_reads`` is set."""
    router = deps.router(tags=["posts"])
    Session = Annotated[AsyncSession, deps.session_param]
    # Writers: a verified email too when require_verified_email is on.
    CurrentUser = Annotated[User, deps.writer_param]
    # Reads take the fast path: the token check and the read on one driver connection.
    Reader = Annotated[ReadAccess, deps.read_access_param]
    # Reads that need the reader before their first statement take the session path.
    SessionReader = Annotated[User | None, deps.reader_param]
    content_limit = settings.post_content_max_length

    @router.get(
        "/posts",
        name="postkit:list_posts",
        response_model=list[PostPublic],
        responses={
            200: {"headers": _PAGING_HEADERS},
            **error_responses(400, 401, 422),
            **deps.rate_limit_responses("search"),
        },
        dependencies=[deps.rate_limit("search", when=_is_search)],
    )
    async def list_posts(
        request: Request,
        reader: Reader,
        limit: Annotated[
            int, Query(ge=1, le=settings.posts_max_limit, description="Posts per page.")
        ] = settings.posts_default_limit,
        skip: Annotated[int, Query(ge=0, le=MAX_ID, description="Posts to skip first.")] = 0,
        search: Annotated[
            str | None,
            Query(
                min_length=settings.search_min_length,
                max_length=SEARCH_MAX_LENGTH,
                description=(
                    "Case-insensitive literal substring of the title or content, at least "
                    f"{settings.search_min_length} characters (the `search_min_length` setting:"
                    " shorter terms cannot use the search index, and are refused with 422)."
                ),
            ),
        ] = None,
        sort: Annotated[Sort, Query(description=SORT_DESCRIPTION)] = "new",
        t: Annotated[
            TopWindow | None,
            Query(
                description=(
                    "With `sort=top` only (422 with another sort): posts created in the last "
                    "`day`, `week`, `month` (30 days), `year` (365 days), or `all` (the default)."
                )
            ),
        ] = None,
        cursor: Annotated[
            str | None,
            Query(
                max_length=512,
                description=(
                    "From a previous page's `X-Next-Cursor`, with the same `sort` (and `t`): "
                    "a cursor of another sort is refused with 400."
                ),
            ),
        ] = None,
    ) -> Response:
        """The posts the caller may see, newest first, or in the order `sort` names.

        The next page's URL is in the `Link` header (`rel="next"`), its cursor in `X-Next-Cursor`.
        """
        page = await posts.feed_for(
            reader,
            limit=limit,
            skip=skip,
            search=_check_search(search) or None,
            sort=sort,
            cursor=cursor,
            window=_check_window(sort, t),
        )
        return json_response(page.posts, headers=_next_page_headers(request, page.next_cursor))

    @router.get(
        "/posts/{post_id}",
        name="postkit:get_post",
        response_model=PostPublic,
        responses=error_responses(401, 404, 422),
    )
    async def get_post(post_id: ItemId, reader: Reader) -> Response:
        """One post. Another user's draft answers 404, like a post that does not exist."""
        return json_response(await posts.get_for(reader, post_id=post_id))

    @router.get(
        "/posts/{post_id}/revisions",
        name="postkit:list_post_revisions",
        response_model=list[PostRevisionPublic],
        responses={200: {"headers": _PAGING_HEADERS}, **error_responses(400, 401, 404, 422)},
    )
    async def list_post_revisions(
        request: Request,
        post_id: ItemId,
        session: Session,
        reader: SessionReader,
        limit: Annotated[
            int, Query(ge=1, le=settings.posts_max_limit, description="Revisions per page.")
        ] = settings.posts_default_limit,
        cursor: Annotated[
            str | None,
            Query(max_length=512, description="From a previous page's `X-Next-Cursor`."),
        ] = None,
    ) -> Response:
        """A post's previous versions, newest first: each is what the post was until the edit
        at `replaced_at`.

        Visible to whoever may see the post, or only to its author when the
        `revisions_visible_to` setting is `author` (404 for others, as for a post they cannot
        see). Versions saved while the post was a draft are listed to its author only.
        """
        page = await posts.revisions(
            session, post_id=post_id, user=reader, limit=limit, cursor=cursor
        )
        return json_response(page.revisions, headers=_next_page_headers(request, page.next_cursor))

    @router.post(
        "/posts",
        name="postkit:create_post",
        status_code=status.HTTP_201_CREATED,
        response_model=PostPublic,
        responses={
            **error_responses(401, 403, 413, 422),
            **deps.rate_limit_responses("post_create"),
        },
        dependencies=[deps.rate_limit("post_create")],
    )
    async def create_post(body: PostCreate, session: Session, user: CurrentUser) -> Response:
        """Create a post owned by the caller."""
        _check_content_length(body.content, content_limit)
        created = await posts.create(session, data=body.model_dump(), user=user)
        return json_response(created, status_code=201)

    async def apply_changes(
        session: AsyncSession, post_id: int, changes: dict[str, Any], user: User
    ) -> Response:
        changes = _without_body_id(post_id, changes)
        _check_content_length(changes.get("content"), content_limit)
        updated = await posts.update(session, post_id=post_id, changes=changes, user=user)
        return json_response(updated)

    # PUT and PATCH answer alike: the post after the change, or why it was refused.
    change_answers: dict[str, Any] = {
        "response_model": PostPublic,
        "responses": error_responses(401, 403, 404, 413, 422),
    }

    @router.put("/posts/{post_id}", name="postkit:replace_post", **change_answers)
    async def replace_post(
        post_id: ItemId, body: PostReplace, session: Session, user: CurrentUser
    ) -> Response:
        """Replace a post's title, content and published flag (owner only).

        An `id` in the body is accepted when it is the path's id (422 otherwise).
        """
        return await apply_changes(session, post_id, body.model_dump(), user)

    @router.patch("/posts/{post_id}", name="postkit:update_post", **change_answers)
    async def update_post(
        post_id: ItemId, body: PostPatch, session: Session, user: CurrentUser
    ) -> Response:
        """Change only the fields sent (owner only). A field may be left out, never `null`.

        An `id` in the body is accepted when it is the path's id (422 otherwise).
        """
        return await apply_changes(session, post_id, body.model_dump(exclude_unset=True), user)

    @router.delete(
        "/posts/{post_id}",
        name="postkit:delete_post",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses=error_responses(401, 403, 404, 422),
    )
    async def delete_post(post_id: ItemId, session: Session, user: CurrentUser) -> Response:
        """Delete a post and its votes (owner only)."""
        await posts.delete(session, post_id=post_id, user=user)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
