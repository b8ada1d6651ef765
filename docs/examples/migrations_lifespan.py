"""A host with a lifespan of its own that migrates before serving.

``PostKitSettings(auto_migrate=True)`` does the same inside ``kit.lifespan``; write it out like
this when the host has start-up work of its own to order around it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from postkit import PostKit, PostKitSettings
from postkit.migrations import upgrade_async


def create_app(settings: PostKitSettings) -> FastAPI:
    kit = PostKit(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Inside the running event loop: the awaitable variant, never upgrade().
        await upgrade_async(settings.database_url)
        async with kit.lifespan(app):
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(kit.router)
    return app
