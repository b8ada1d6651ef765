"""A minimal host app: postkit's router mounted at the root, settings from ``POSTKIT_*``.

The benchmark serves the reference app (``examples/socialapp``) when it is present; this module
is the fallback, and mounts the router exactly the way the reference app and the docs do.
Run it with ``uvicorn --factory --app-dir bench postkit_app:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI

from postkit import PostKit, PostKitSettings


def create_app() -> FastAPI:
    kit = PostKit(PostKitSettings())
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router)
    return app
