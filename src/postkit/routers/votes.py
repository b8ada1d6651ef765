"""Votes: ``POST /vote`` (the classic form) and ``PUT/DELETE /posts/{id}/vote`` (idempotent)."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import Dependencies
from postkit.errors import error_responses
from postkit.models import User
from postkit.routers.common import ItemId
from postkit.schemas.votes import VoteIn, VoteState, VoteValue
from postkit.services.votes import VoteOutcome, Votes

__all__ = ["get_votes_router"]


def _state(outcome: VoteOutcome) -> dict[str, int]:
    return {
        "post_id": outcome.post_id,
        "dir": outcome.direction,
        "score": outcome.score,
        "upvotes": outcome.upvotes,
        "downvotes": outcome.downvotes,
        "votes": outcome.score,
    }


def get_votes_router(votes: Votes, deps: Dependencies) -> APIRouter:
    """The vote routes on ``votes``; all need a token."""
    router = deps.router(tags=["votes"])
    Session = Annotated[AsyncSession, deps.session_param]
    # Writers: a verified email too when require_verified_email is on.
    CurrentUser = Annotated[User, deps.writer_param]
    vote_limit = deps.rate_limit("vote")  # one budget for all three forms of voting
    limited = deps.rate_limit_responses("vote")

    @router.post(
        "/vote",
        name="postkit:vote",
        status_code=status.HTTP_201_CREATED,
        response_model=VoteState,
        responses={**error_responses(401, 403, 404, 409, 413, 422), **limited},
        dependencies=[vote_limit],
    )
    async def vote(body: VoteIn, session: Session, user: CurrentUser) -> dict[str, int]:
        """`dir` 1 up-votes the post, -1 down-votes it (409 if your vote already is so; a vote
        the other way is switched); `dir` 0 removes your vote (404 if there is none). All
        answer 201 with the post's new counters."""
        if body.dir == 0:
            outcome = await votes.remove(session, post_id=body.post_id, user=user, strict=True)
        else:
            outcome = await votes.cast(
                session, post_id=body.post_id, user=user, strict=True, direction=body.dir
            )
        return _state(outcome)

    @router.put(
        "/posts/{post_id}/vote",
        name="postkit:put_vote",
        response_model=VoteState,
        responses={
            200: {"description": "The vote already was as asked; nothing changed"},
            201: {"model": VoteState, "description": "The vote was cast, or switched"},
            **error_responses(401, 403, 404, 422),
            **limited,
        },
        dependencies=[vote_limit],
    )
    async def put_vote(
        post_id: ItemId,
        session: Session,
        user: CurrentUser,
        response: Response,
        body: Annotated[VoteValue | None, Body()] = None,
    ) -> dict[str, Any]:
        """Vote on a post: up without a body or with `{"dir": 1}`, down with `{"dir": -1}`.
        Safe to retry: 201 when the vote is new or switched direction, 200 when it already
        was so."""
        direction = body.dir if body is not None else 1
        outcome = await votes.cast(
            session, post_id=post_id, user=user, strict=False, direction=direction
        )
        response.status_code = status.HTTP_201_CREATED if outcome.changed else status.HTTP_200_OK
        return _state(outcome)

    @router.delete(
        "/posts/{post_id}/vote",
        name="postkit:delete_vote",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses={**error_responses(401, 403, 404, 422), **limited},
        dependencies=[vote_limit],
    )
    async def delete_vote(post_id: ItemId, session: Session, user: CurrentUser) -> Response:
        """Remove your vote (up or down) from a post; safe to retry (204 whether or not there
        was one)."""
        await votes.remove(session, post_id=post_id, user=user, strict=False)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
