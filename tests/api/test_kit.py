"""What the kit offers a host's own routes: ``kit.find_post`` and errors that keep their status."""

# No `from __future__ import annotations`: FastAPI must resolve the local Annotated aliases.

from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from postkit import Post, PostKitError, User, hookimpl
from tests.support.api import make_post


class HideTitled:
    """Hides posts titled "hidden" from everyone (a moderation filter)."""

    @hookimpl
    def post_query_filters(self, user: User | None) -> list[Any]:
        return [Post.title != "hidden"]


def add_host_routes(client: Any) -> None:
    kit, app = client.kit, client.app
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]
    CurrentUser = Annotated[User, Depends(kit.current_user)]

    @app.get("/host/posts/{post_id}")
    async def host_post(post_id: int, session: Session, user: CurrentUser) -> dict[str, Any]:
        post = await kit.find_post(session, post_id=post_id, user=user)
        return {"id": post.id, "owner": post.owner.username}

    @app.get("/host/refuse")
    async def host_refuse() -> None:
        raise PostKitError("Not today", status_code=409, code="HOST_REFUSED")


async def test_find_post_applies_drafts_and_plugin_filters(make_client, new_user):
    client = await make_client(plugins=[HideTitled()])
    add_host_routes(client)
    alice, bob = await new_user(client), await new_user(client)
    visible = await make_post(client, alice)
    hidden = await make_post(client, alice, title="hidden")
    draft = await make_post(client, alice, published=False)

    seen = await client.get(f"/host/posts/{visible['id']}", headers=bob.headers)
    assert seen.status_code == 200
    assert seen.json() == {"id": visible["id"], "owner": alice.username}
    # Hidden by a plugin's read filter, another user's draft, or absent: the same 404.
    for post_id in (hidden["id"], draft["id"], 999_999):
        response = await client.get(f"/host/posts/{post_id}", headers=bob.headers)
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": "Post not found"}
    # The owner sees their own draft.
    own = await client.get(f"/host/posts/{draft['id']}", headers=alice.headers)
    assert own.status_code == 200


async def test_postkit_errors_keep_their_status_on_host_routes(client):
    add_host_routes(client)
    response = await client.get("/host/refuse")
    assert response.status_code == 409
    assert response.json() == {"detail": "Not today"}
    anonymous = await client.get("/host/posts/1")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
