"""Protecting a host's own routes with postkit's accounts."""

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from postkit import PostKit, PostKitError, PostKitSettings, User


def create_app(settings: PostKitSettings | None = None) -> FastAPI:
    kit = PostKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router, prefix="/api")

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

    # Optional: answer postkit's errors on your own routes with postkit's body, code included
    # ({"detail": ..., "code": ...}) instead of FastAPI's plain {"detail": ...}.
    @app.exception_handler(PostKitError)
    async def postkit_error(request: Request, exc: PostKitError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    return app
