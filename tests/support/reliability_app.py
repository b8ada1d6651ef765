"""The app the reliability tests serve from real processes (uvicorn, gunicorn workers).

Every setting comes from ``POSTKIT_*`` environment variables, so a test configures the server it
starts through its environment:
``uvicorn --factory --app-dir tests/support reliability_app:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI

from postkit import PostKit, PostKitSettings


def create_app() -> FastAPI:
    """postkit's router mounted at the root of a bare FastAPI app."""
    kit = PostKit(PostKitSettings(_env_file=None))  # type: ignore[call-arg]
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router)
    return app
