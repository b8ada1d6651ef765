"""Posts routes (to be filled in by the posts work)."""

from typing import TYPE_CHECKING

from fastapi import APIRouter

from postkit.routing import PostKitRoute

if TYPE_CHECKING:
    from postkit.kit import PostKit

__all__ = ["get_posts_router"]


def get_posts_router(kit: "PostKit") -> APIRouter:
    router = APIRouter(route_class=PostKitRoute, tags=["posts"])
    return router
