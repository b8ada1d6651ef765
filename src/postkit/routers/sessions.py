"""Session routes: ``GET /sessions`` (the account's live logins) and ``DELETE /sessions/{id}``."""

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from postkit.dependencies import Authenticated, Dependencies
from postkit.errors import error_responses
from postkit.schemas.sessions import SessionPublic
from postkit.services.sessions import SessionInfo, Sessions

__all__ = ["get_sessions_router"]


def get_sessions_router(sessions: Sessions, deps: Dependencies) -> APIRouter:
    """Build the session list routes on ``sessions``."""
    router = deps.router(tags=["auth"])
    Session = Annotated[AsyncSession, deps.session_param]
    CurrentAuth = Annotated[Authenticated, deps.current_auth_param]

    @router.get(
        "/sessions",
        name="postkit:list_sessions",
        response_model=list[SessionPublic],
        responses=error_responses(401),
    )
    async def list_sessions(
        auth: CurrentAuth, session: Session, response: Response
    ) -> list[SessionInfo]:
        """The account's live sessions (logins not ended nor past `session_max_lifetime`),
        newest first. `current` marks the one the calling token belongs to.

        `last_used_at` moves at login and at each refresh, not on every request. Sent with
        `Cache-Control: no-store`.
        """
        response.headers["Cache-Control"] = "no-store"
        return await sessions.list_live(
            session, user_id=auth.user.id, current_session_id=auth.claims.session_id
        )

    @router.delete(
        "/sessions/{session_id}",
        name="postkit:end_session",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401, 404, 422),
    )
    async def end_session(
        session_id: Annotated[str, Path(max_length=64)], auth: CurrentAuth, session: Session
    ) -> None:
        """End one of the account's sessions (sign a lost device out): its refresh and access
        tokens stop working. Ending the current one is a logout.

        404 `SESSION_NOT_FOUND` for an id that is not a live session of this account, whether
        unknown, already ended or another account's.
        """
        await sessions.end_own(session, user_id=auth.user.id, session_id=session_id)

    return router
