"""Protecting a host's own routes with postkit's accounts."""

from typing import Annotated

from fastapi import Depends, FastAPI

from postkit import PostKit, PostKitSettings, User


def create_app(settings: PostKitSettings | None = None) -> FastAPI:
    kit = PostKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router, prefix="/api")
    # Optional: your own routes answer postkit's errors with postkit's body, code included
    # ({"detail": ..., "code": ...}), and a lost database link with 503, not a 500.
    kit.install_error_handlers(app)

    CurrentUser = Annotated[User, Depends(kit.current_user)]
    OptionalUser = Annotated[User | None, Depends(kit.optional_user)]

    @app.get("/api/dashboard")
    async def dashboard(user: CurrentUser) -> dict[str, str]:
        """Signed-in users only: 401 with `WWW-Authenticate: Bearer` otherwise."""
        return {"hello": user.username}

    @app.get("/api/greeting")
    async def greeting(user: OptionalUser) -> dict[str, str]:
        """Anyone; signed-in users get a personal answer."""
        return {"greeting": f"Welcome back, {user.username}" if user else "Hello, stranger"}

    return app
