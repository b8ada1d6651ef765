"""The feed app with its API docs served by the app itself: /docs works without internet."""

from fastapi import FastAPI

from postkit import PostKit, PostKitSettings
from postkit.docs import serve_offline_docs

kit = PostKit(PostKitSettings(database_url="sqlite:///./feed.db", auto_migrate=True))
app = FastAPI(title="My feed", lifespan=kit.lifespan, redoc_url=None)  # ReDoc needs a CDN
app.include_router(kit.router)
serve_offline_docs(app)  # Swagger UI at /docs, its files from the openapi-ui-bundles package
