"""Votes routes (to be filled in by the votes work)."""

from typing import TYPE_CHECKING

from fastapi import APIRouter

from postkit.routing import PostKitRoute

if TYPE_CHECKING:
    from postkit.kit import PostKit

__all__ = ["get_votes_router"]


def get_votes_router(kit: "PostKit") -> APIRouter:
    router = APIRouter(route_class=PostKitRoute, tags=["votes"])
    return router
