"""Calling postkit's services from a host's own routes."""

from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from postkit import PostKit, PostKitSettings, User


def create_app(settings: PostKitSettings | None = None) -> FastAPI:
    kit = PostKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router)
    kit.install_error_handlers(app)  # postkit's error bodies, and 503 for outages, here too

    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]
    CurrentUser = Annotated[User, Depends(kit.current_user)]

    @app.post("/welcome")
    async def welcome(session: Session, user: CurrentUser) -> dict[str, object]:
        """Create the caller's first post and vote for it: every hook and rule applies."""
        post = await kit.posts.create(
            session, data={"title": "Hello!", "content": f"{user.username} is here."}, user=user
        )
        vote = await kit.votes.cast(session, post_id=post["id"], user=user, strict=False)
        return {"post_id": post["id"], "score": vote.score}

    @app.get("/posts/{post_id}/owner")
    async def post_owner(post_id: int, session: Session, user: CurrentUser) -> dict[str, str]:
        """404 POST_NOT_FOUND, as on postkit's routes, for a post the caller may not see."""
        post = await kit.posts.find(session, post_id=post_id, user=user)
        return {"owner": post.owner.username}

    return app
