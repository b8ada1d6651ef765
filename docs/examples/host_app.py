"""A host app built by a factory, so tests can give it their own settings."""

from typing import Annotated

from fastapi import Depends, FastAPI

from postkit import PostKit, PostKitSettings, User


def create_app(settings: PostKitSettings | None = None) -> FastAPI:
    kit = PostKit(settings)  # None: read POSTKIT_* variables and .env
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router, prefix="/api")

    @app.get("/api/greeting")
    async def greeting(user: Annotated[User, Depends(kit.current_user)]) -> dict[str, str]:
        return {"greeting": f"Welcome back, {user.username}"}

    return app
