"""Votes: ``POST /vote`` (the classic form) and ``PUT/DELETE /posts/{id}/vote`` (idempotent)."""

from typing import Annotated

from fastapi import APIRouter, Body, Response, status

from postkit.dependencies import Dependencies
from postkit.errors import error_responses
from postkit.routers.common import ItemId, json_response
from postkit.schemas.votes import VoteIn, VoteState, VoteValue
from postkit.services.sessions import WriteAccess
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
    # The fast path: the writer (with a verified email when require_verified_email is on) is
    # checked in the vote's own transaction on a pooled driver connection.
    Writer = Annotated[WriteAccess, deps.write_access_param]
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
    async def vote(body: VoteIn, writer: Writer) -> Response:
        """`dir` 1 up-votes the post, -1 down-votes it (409 if your vote already is so; a vote
        the other way is switched); `dir` 0 removes your vote (404 if there is none). All
        answer 201 with the post's new counters."""
        if body.dir == 0:
            outcome = await votes.remove_for(writer, post_id=body.post_id, strict=True)
        else:
            outcome = await votes.cast_for(
                writer, post_id=body.post_id, strict=True, direction=body.dir
            )
        return json_response(_state(outcome), status_code=status.HTTP_201_CREATED)

    @router.put(
        "/posts/{post_id}/vote",
        name="postkit:put_vote",
        response_model=VoteState,
        responses={
            200: {"description": "The vote already was as asked; nothing changed"},
            201: {"model": VoteState, "description": "The vote was cast, or switched"},
            **error_responses(401, 403, 404, 413, 422),
            **limited,
        },
        dependencies=[vote_limit],
    )
    async def put_vote(
        post_id: ItemId,
        writer: Writer,
        # Optional (no body is an up-vote) but never null: a nullable optional body makes
        # generated clients send their "unset" marker.
        body: Annotated[VoteValue, Body()] = VoteValue(),
    ) -> Response:
        """Vote on a post: up without a body or with `{"dir": 1}`, down with `{"dir": -1}`.
        Safe to retry: 201 when the vote is new or switched direction, 200 when it already
        was so."""
        direction = body.dir
        outcome = await votes.cast_for(writer, post_id=post_id, strict=False, direction=direction)
        code = status.HTTP_201_CREATED if outcome.changed else status.HTTP_200_OK
        return json_response(_state(outcome), status_code=code)

    @router.delete(
        "/posts/{post_id}/vote",
        name="postkit:delete_vote",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses={**error_responses(401, 403, 404, 422), **limited},
        dependencies=[vote_limit],
    )
    async def delete_vote(post_id: ItemId, writer: Writer) -> Response:
        """Remove your vote (up or down) from a post; safe to retry (204 whether or not there
        was one)."""
        await votes.remove_for(writer, post_id=post_id, strict=False)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
