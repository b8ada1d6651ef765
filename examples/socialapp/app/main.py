"""The reference app: postkit mounted at the root, plus bookmarks, a health check and offline docs.

Served from examples/socialapp: ``uvicorn app.main:app`` in development (SQLite, no
configuration), ``gunicorn -c gunicorn.conf.py app.main:app`` in production.
"""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.bookmarks import get_bookmarks_router
from app.plugin import CommunityRules
from app.settings import AppSettings, describe_database
from postkit import PostKit
from postkit.docs import serve_offline_docs

logger = logging.getLogger("socialapp")


def create_app(settings: AppSettings | None = None) -> FastAPI:
    """Build the app from ``settings`` (read from the environment and ``.env`` when omitted)."""
    settings = settings if settings is not None else AppSettings()
    _configure_logging(settings.log_level)
    kit = PostKit(settings.postkit_settings(), plugins=[CommunityRules(settings.banned_word_list)])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("socialapp: %s", describe_database(settings))
        if settings.migrate_on_startup:
            # Imported here: Alembic (with Mako and Pygments) is about 7 MiB of memory that a
            # worker which does not migrate never needs.
            from app.migrate import migrate_async

            await migrate_async(settings.database_url)
            logger.info("socialapp: migrations applied")
        async with kit.lifespan(app):
            # What start-up built lives as long as the worker: keep it out of the garbage
            # collector's full passes, which otherwise stall every request now and then
            # (p99 at 32 connections: about 115 ms without, 75 ms with; docs/benchmarks.md).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()

    app = FastAPI(
        title="socialapp",
        summary="The postkit reference app: accounts, posts, votes and bookmarks.",
        lifespan=lifespan,
        redoc_url=None,  # ReDoc would load its script from a CDN
    )
    app.state.kit = kit
    app.state.settings = settings
    serve_offline_docs(app)  # /docs from installed files, so it works without internet
    app.include_router(kit.router)
    app.include_router(get_bookmarks_router(kit))
    _add_health_route(app, kit)
    return app


def _add_health_route(app: FastAPI, kit: PostKit) -> None:
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]

    @app.get("/health", tags=["health"], operation_id="health", summary="Health")
    async def health(session: Session) -> JSONResponse:
        """200 ``{"status": "ok", "database": "ok"}`` when the database answers, else 503."""
        try:
            await session.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            logger.warning("socialapp: health check failed: database unavailable", exc_info=True)
            return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})


def _configure_logging(level: str) -> None:
    # The app's own log lines (database location, migrations) next to the server's.
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


app = create_app()
